package mintstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Backups. A backup is a consistent copy of the database (bbolt's
// Tx.WriteTo in one read transaction) that carries a backup marker, which
// the live database never does: a store opened on a backup retires the
// keysets it holds ([Open]). The copy holds the keysets' secret keys, as
// the database does; it is written with mode 0600.

// ErrNotBackup reports a file that is not a backup made by this package.
var ErrNotBackup = errors.New("mintstore: not a backup (no backup marker)")

// ErrInUse reports a database that another process has open, for
// [BackupFile]: back up a running mint with [Store.Backup].
var ErrInUse = errors.New("mintstore: database in use by another process")

// BackupInfo describes a backup, from its marker.
type BackupInfo struct {
	// Time is when the copy was taken.
	Time time.Time
	// Epoch is the restore guard's epoch of the database at that time.
	Epoch uint64
	// Issuing lists the keysets that could still issue at Time: not
	// revoked, not retired, issue window not over. A store opened on the
	// backup retires them (and every other keyset the backup holds).
	Issuing [][32]byte
}

// backupMarker: u64 Unix seconds ‖ instance (16) ‖ u64 epoch ‖ u16 n ‖
// n × keyset ID.
type backupMarker struct {
	time     int64
	instance [16]byte
	epoch    uint64
	issuing  [][32]byte
}

func encodeBackupMarker(m *backupMarker) []byte {
	v := make([]byte, 0, 8+16+8+2+32*len(m.issuing))
	v = binary.BigEndian.AppendUint64(v, uint64(m.time))
	v = append(v, m.instance[:]...)
	v = binary.BigEndian.AppendUint64(v, m.epoch)
	v = binary.BigEndian.AppendUint16(v, uint16(len(m.issuing)))
	for _, id := range m.issuing {
		v = append(v, id[:]...)
	}
	return v
}

func decodeBackupMarker(v []byte) (backupMarker, error) {
	d := decoder{b: v}
	var m backupMarker
	m.time = int64(d.u64())
	m.instance = [16]byte(d.bytes(16))
	m.epoch = d.u64()
	n := int(d.u16())
	switch {
	// Checked before the loop, so that a short marker does not make it
	// allocate 65,535 IDs.
	case len(d.b) < 32*n:
		return m, fmt.Errorf("%w: backup marker", errShort)
	case len(d.b) > 32*n:
		return m, fmt.Errorf("%w: backup marker", errTrailing)
	}
	for range n {
		m.issuing = append(m.issuing, [32]byte(d.bytes(32)))
	}
	if err := d.done(); err != nil {
		return m, fmt.Errorf("%w: backup marker", err)
	}
	return m, nil
}

func (m *backupMarker) info() BackupInfo {
	return BackupInfo{Time: time.Unix(m.time, 0), Epoch: m.epoch, Issuing: append([][32]byte(nil), m.issuing...)}
}

// issuingAt lists the keysets that may still issue at Unix time t.
func issuingAt(tx *bolt.Tx, t int64) ([][32]byte, error) {
	rv := tx.Bucket(bucketRevoked)
	closed := newClosedFlags(tx)
	var out [][32]byte
	err := tx.Bucket(bucketKeysets).ForEach(func(k, v []byte) error {
		r, err := decodeKeyset(k, v)
		if err != nil {
			return err
		}
		if rv.Get(k) == nil && closed.get(r.id)&(closedIssue|closedRetired) == 0 && t < r.issueUntil {
			out = append(out, r.id)
		}
		return nil
	})
	return out, err
}

// BackupFile writes a backup of the store, taken while it runs, to path
// (through a temporary file beside it, synced and renamed): a consistent
// copy as of one moment, with a backup marker. Restoring it (putting it
// in the database's place) is safe: the store opened on it retires its
// keysets. The copy holds one read transaction while it is written, so
// path should be on a local disk.
func (s *Store) BackupFile(path string) (BackupInfo, error) {
	return writeBackup(s.db, path, time.Now())
}

// Backup writes a backup of the store, as [Store.BackupFile] does, to w.
// The copy is made in a temporary file beside the database (mode 0600)
// and removed once written to w, so that a slow w does not hold a read
// transaction.
func (s *Store) Backup(ctx context.Context, w io.Writer) (BackupInfo, error) {
	if err := ctx.Err(); err != nil {
		return BackupInfo{}, err
	}
	f, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+".backup*")
	if err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: backup: %w", err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	info, err := s.BackupFile(tmp)
	if err != nil {
		return info, err
	}
	f, err = os.Open(tmp)
	if err != nil {
		return info, fmt.Errorf("mintstore: backup: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, ctxReader{ctx, f}); err != nil {
		return info, fmt.Errorf("mintstore: backup: %w", err)
	}
	return info, nil
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// BackupFile writes a backup of the database at dbPath, which no process
// has open (a stopped mint), to out, as [Store.BackupFile] does. It opens
// the database read-only and does not run the restore guard on it. A
// database that a process has open fails with [ErrInUse] once the lock
// timeout ([WithLockTimeout], default one second) has passed.
func BackupFile(dbPath, out string, opts ...Option) (BackupInfo, error) {
	o := options{lockTimeout: time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if _, err := os.Stat(dbPath); err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: %w", err)
	}
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{ReadOnly: true, Timeout: o.lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return BackupInfo{}, fmt.Errorf("%w: %s", ErrInUse, dbPath)
	}
	if err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: opening %s: %w", dbPath, err)
	}
	defer db.Close()
	return writeBackup(db, out, time.Now())
}

// ReadBackupInfo reads the marker of the backup at path; a file without
// one fails with [ErrNotBackup]. It opens the file read-only.
func ReadBackupInfo(path string) (BackupInfo, error) {
	if _, err := os.Stat(path); err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: opening %s: %w", path, err)
	}
	defer db.Close()
	var info BackupInfo
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return ErrNotBackup
		}
		v := meta.Get(keyBackup)
		if v == nil {
			return ErrNotBackup
		}
		m, err := decodeBackupMarker(v)
		if err != nil {
			return err
		}
		info = m.info()
		return nil
	})
	return info, err
}

// ErrBackupOverStore refuses a backup whose destination is the database
// itself: renamed over the live file, it would take the place of
// everything the store writes after it.
var ErrBackupOverStore = errors.New("mintstore: backup destination is the database itself")

// SamePath reports whether paths a and b name one file, or would: the
// same file if both exist, else the same absolute path. A backup must not
// be written to the path of its store.
func SamePath(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(fa, fb)
	}
	aa, errA := filepath.Abs(a)
	ab, errB := filepath.Abs(b)
	return errA == nil && errB == nil && aa == ab
}

// writeBackup copies db to out, with a backup marker for time now.
func writeBackup(db *bolt.DB, out string, now time.Time) (_ BackupInfo, err error) {
	if SamePath(db.Path(), out) {
		return BackupInfo{}, ErrBackupOverStore
	}
	dir := filepath.Dir(out)
	f, err := os.CreateTemp(dir, filepath.Base(out)+".tmp*")
	if err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: backup: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	m := backupMarker{time: now.Unix()}
	if err := db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil || tx.Bucket(bucketKeysets) == nil {
			return fmt.Errorf("%w: not a mint store", ErrCorrupt)
		}
		d, err := readDBGuard(tx)
		if err != nil {
			return err
		}
		m.instance, m.epoch = d.instance, d.epoch
		if m.issuing, err = issuingAt(tx, m.time); err != nil {
			return err
		}
		_, err = tx.WriteTo(f)
		return err
	}); err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: backup: %w", err)
	}
	if err := f.Sync(); err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: backup: %w", err)
	}
	// Mark the copy: a transaction of its own, on the copy alone.
	cdb, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: backup: opening the copy: %w", err)
	}
	err = cdb.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyBackup, encodeBackupMarker(&m))
	})
	if cerr := cdb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: backup: marking the copy: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: backup: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return BackupInfo{}, fmt.Errorf("mintstore: backup: %w", err)
	}
	return m.info(), nil
}
