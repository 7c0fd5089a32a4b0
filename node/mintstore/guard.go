package mintstore

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/internal/crashpoint"
)

// The restore guard.
//
// A nonce answered twice under different challenges reveals the key that
// answered it. A database restored from a copy has lost the rows the mint
// committed after the copy was taken; a wallet retrying such a nonce with
// other challenges would be answered afresh. So [Open] retires every
// keyset of a database that it finds was restored: the store inserts no
// new row of it again ([ErrKeysetRetired]), answers the rows it holds, and
// spends its coins as usual; the mint then makes a fresh keyset.
//
// What tells a restored database:
//
//   - A copy made by [Store.Backup], [Store.BackupFile] or [BackupFile]
//     carries a backup marker (meta "backup"); the live database never
//     does. Open retires the copy's keysets in the transaction that
//     clears the marker.
//   - Any other copy (cp of the file, a filesystem snapshot) is caught by
//     the guard file, a small file beside the database (path + ".guard",
//     or [WithGuardFile]), and the guard record inside the database
//     (meta "guard": a random instance ID and an epoch). Both name the
//     same instance and epoch while the database is the live one. The
//     epoch advances at each Open, every guard interval while rows are
//     being inserted ([WithGuardInterval]), and at Close if rows were
//     inserted since the last advance; the guard file is written (and
//     synced) before the database enters the epoch. A database whose
//     record differs from its guard file in any way (behind it, ahead of
//     it, another instance, no guard file, a guard file that does not
//     parse, keysets but no record) is treated as restored.
//
// Every mismatch retires: a crash between writing the guard file and
// committing the database's epoch costs a needless rotation, never a
// missed one. What no local file can catch is a copy of both files taken
// together and restored together (a consistent rollback of the whole
// directory, which looks like a restart), and a live copy restored after
// the process crashed less than one guard interval after rows were
// inserted, before the epoch advanced past them. SPEC.md (§9, Backups and
// restores) says what an operator does about them.

// DefaultGuardInterval is how often the store advances its epoch while
// rows are being inserted ([WithGuardInterval]).
const DefaultGuardInterval = 10 * time.Second

// GuardSuffix is added to the database's path to name its guard file,
// unless [WithGuardFile] names another.
const GuardSuffix = ".guard"

// WithGuardFile sets the path of the guard file (default: the database's
// path + [GuardSuffix]). A guard file kept where backups of the database
// do not reach also catches a restore of a copy of the whole directory.
func WithGuardFile(path string) Option {
	return func(o *options) { o.guardFile = path }
}

// WithGuardInterval sets how often the store advances its epoch while
// rows are inserted (default [DefaultGuardInterval]): a live copy of the
// database restored after a crash is caught if the epoch advanced between
// the copy and the crash. Zero or less advances the epoch only at Open and
// Close.
func WithGuardInterval(d time.Duration) Option {
	return func(o *options) { o.guardInterval = d }
}

// GuardReport says what [Open] found and did about restores.
type GuardReport struct {
	// Restored is set when Open treated the database as restored from a
	// copy and retired its keysets.
	Restored bool
	// Reason says why, in words, for the log; empty if not Restored.
	Reason string
	// BackupTime is when the copy was taken, for a copy made by Backup;
	// zero otherwise.
	BackupTime time.Time
	// Retired lists the keysets this Open retired (all the keysets the
	// database held that were not retired already).
	Retired [][32]byte
	// Epoch is the epoch the store entered.
	Epoch uint64
}

// Guard returns what [Open] found and did about restores.
func (s *Store) Guard() GuardReport {
	r := s.guard.report
	r.Retired = append([][32]byte(nil), r.Retired...)
	return r
}

// guard is the open store's side of the restore guard.
type guard struct {
	path     string
	interval time.Duration
	instance [16]byte
	report   GuardReport

	mu    sync.Mutex // one advance at a time; guards epoch
	epoch uint64
	dirty atomic.Bool // rows inserted since the epoch last advanced

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// guardRecord is the database's guard record: instance (16) ‖ u64 epoch.
func encodeGuard(instance [16]byte, epoch uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), instance[:]...), epoch)
}

// guardFile is the guard file's content. It holds no secret.
type guardFile struct {
	Comment  string `json:"comment"`
	Version  int    `json:"version"`
	Instance string `json:"instance"`
	Epoch    uint64 `json:"epoch"`
}

const guardComment = "scrip mint restore guard: the epoch its database is in. " +
	"Never restore or copy it together with the database; see SPEC.md, Backups and restores."

// maxGuardFile bounds what is read of a guard file: the file the store
// writes is about 250 bytes.
const maxGuardFile = 4 << 10

// readGuardFile reads the guard file at path: at most maxGuardFile bytes,
// so that a path pointed at something else (a device, a large file) is
// refused, not read whole.
func readGuardFile(path string) (guardFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return guardFile{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxGuardFile+1))
	if err != nil {
		return guardFile{}, err
	}
	return parseGuardFile(b)
}

// parseGuardFile decodes a guard file: JSON of version 1, in at most
// maxGuardFile bytes.
func parseGuardFile(b []byte) (guardFile, error) {
	var g guardFile
	if len(b) > maxGuardFile {
		return g, fmt.Errorf("over %d bytes", maxGuardFile)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		return g, err
	}
	if g.Version != 1 {
		return g, fmt.Errorf("version %d", g.Version)
	}
	return g, nil
}

// writeGuardFile replaces the guard file at path, durably: a temporary
// file, synced, renamed over it, and the directory synced.
func writeGuardFile(path string, instance [16]byte, epoch uint64) error {
	b, err := json.MarshalIndent(guardFile{Comment: guardComment, Version: 1, Instance: hex.EncodeToString(instance[:]), Epoch: epoch}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSynced(path, append(b, '\n')); err != nil {
		return fmt.Errorf("mintstore: writing the guard file: %w", err)
	}
	return nil
}

// writeFileSynced writes b to path atomically and durably, mode 0600.
func writeFileSynced(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

// syncDir makes a rename in dir durable. On Windows, where a directory
// cannot be opened for syncing, it does nothing.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// dbGuard is what the database says about itself.
type dbGuard struct {
	has      bool // a guard record
	instance [16]byte
	epoch    uint64
	marker   *backupMarker
	keysets  int
}

func readDBGuard(tx *bolt.Tx) (dbGuard, error) {
	var d dbGuard
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keyGuard); v != nil {
		if len(v) != 24 {
			return d, fmt.Errorf("%w: guard record", ErrCorrupt)
		}
		d.has = true
		d.instance = [16]byte(v[:16])
		d.epoch = binary.BigEndian.Uint64(v[16:])
	}
	if v := meta.Get(keyBackup); v != nil {
		m, err := decodeBackupMarker(v)
		if err != nil {
			return d, err
		}
		d.marker = &m
	}
	d.keysets = tx.Bucket(bucketKeysets).Stats().KeyN
	return d, nil
}

// judge decides whether a database is restored from a copy: anything but
// a guard file that names the database's instance and epoch is.
func judge(d dbGuard, g guardFile, gErr error) (restored bool, reason string) {
	switch {
	case d.marker != nil:
		return true, fmt.Sprintf("it is a backup taken at %s", time.Unix(d.marker.time, 0).UTC().Format(time.RFC3339))
	case !d.has && d.keysets == 0:
		return false, "" // a new database: nothing could have signed
	case !d.has:
		return true, "it holds keysets but no restore guard record (a database of an earlier version, or one the guard never saw)"
	case errors.Is(gErr, fs.ErrNotExist):
		return true, "its guard file is missing"
	case gErr != nil:
		return true, fmt.Sprintf("its guard file does not parse (%v)", gErr)
	case g.Instance != hex.EncodeToString(d.instance[:]):
		return true, "its guard file belongs to another database"
	case d.epoch < g.Epoch:
		return true, fmt.Sprintf("it is behind its guard file (epoch %d, guard file %d): a copy of an earlier state", d.epoch, g.Epoch)
	case d.epoch > g.Epoch:
		return true, fmt.Sprintf("it is ahead of its guard file (epoch %d, guard file %d): the guard file was replaced", d.epoch, g.Epoch)
	}
	return false, ""
}

// openGuard runs the restore guard on a store just opened: it judges
// whether the database was restored, writes the next epoch to the guard
// file, and then, in one transaction, retires the keysets of a restored
// database, clears its backup marker and enters the epoch. Then it starts
// advancing the epoch while rows are inserted.
//
// Order: the guard file first. A crash after it leaves the database
// behind its guard file, so the next Open retires (needlessly, if this
// Open did not mean to); a crash before it changes nothing.
func (s *Store) openGuard(o *options) error {
	g := &guard{path: o.guardFile, interval: o.guardInterval}
	var d dbGuard
	if err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		d, err = readDBGuard(tx)
		return err
	}); err != nil {
		return err
	}
	gf, gErr := readGuardFile(g.path)
	restored, reason := judge(d, gf, gErr)
	if d.has {
		g.instance = d.instance
	} else if _, err := rand.Read(g.instance[:]); err != nil {
		return err
	}
	next := d.epoch + 1
	if gErr == nil && gf.Epoch >= next {
		// Past every epoch the guard file has seen: a copy of any earlier
		// state of either line of history stays behind.
		next = gf.Epoch + 1
	}
	if err := writeGuardFile(g.path, g.instance, next); err != nil {
		return err
	}
	crashpoint.Hit("mint/guard/after-guard-file")
	var retired [][32]byte
	if err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if restored {
			var err error
			if retired, err = retireAll(tx); err != nil {
				return err
			}
			if err := meta.Delete(keyBackup); err != nil {
				return err
			}
		}
		if err := meta.Put(keyGuard, encodeGuard(g.instance, next)); err != nil {
			return err
		}
		crashpoint.Hit("mint/guard/before-commit")
		return nil
	}); err != nil {
		return fmt.Errorf("mintstore: entering epoch %d: %w", next, err)
	}
	crashpoint.Hit("mint/guard/after-commit")
	g.epoch = next
	g.report = GuardReport{Restored: restored, Reason: reason, Retired: retired, Epoch: next}
	if d.marker != nil {
		g.report.BackupTime = time.Unix(d.marker.time, 0)
	}
	s.guard = g
	if g.interval > 0 {
		g.stop = make(chan struct{})
		g.done = make(chan struct{})
		go s.guardLoop()
	}
	return nil
}

// retireAll retires every keyset the database holds that is not retired
// yet, and returns those.
func retireAll(tx *bolt.Tx) ([][32]byte, error) {
	cb := tx.Bucket(bucketClosed)
	var ids [][32]byte
	if err := tx.Bucket(bucketKeysets).ForEach(func(id, _ []byte) error {
		if len(id) != 32 {
			return fmt.Errorf("%w: keyset key", ErrCorrupt)
		}
		ids = append(ids, [32]byte(id))
		return nil
	}); err != nil {
		return nil, err
	}
	var out [][32]byte
	for _, id := range ids {
		var f byte
		if v := cb.Get(id[:]); len(v) == 1 {
			f = v[0]
		}
		if f&closedRetired != 0 {
			continue
		}
		if err := cb.Put(bytes.Clone(id[:]), []byte{f | closedRetired}); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

// rowsCommitted notes that rows were inserted in the current epoch.
func (s *Store) rowsCommitted() {
	if s.guard != nil {
		s.guard.dirty.Store(true)
	}
}

// guardLoop advances the epoch every interval while rows are inserted,
// until the store closes. A failed advance is retried at the next tick.
func (s *Store) guardLoop() {
	g := s.guard
	defer close(g.done)
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			_ = s.advance()
		}
	}
}

// advance moves the store to the next epoch if rows were inserted since
// it last did: the guard file first, then the database. A live copy of
// the database taken before the advance is then behind the guard file.
func (s *Store) advance() error {
	g := s.guard
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.dirty.Swap(false) {
		return nil
	}
	next := g.epoch + 1
	err := writeGuardFile(g.path, g.instance, next)
	if err == nil {
		err = s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyGuard, encodeGuard(g.instance, next))
		})
	}
	if err != nil {
		g.dirty.Store(true)
		return err
	}
	g.epoch = next
	return nil
}

// stopGuard stops the loop and, if rows were inserted since the last
// advance, advances the epoch a last time: a live copy taken during this
// run is then behind the guard file once the store is closed.
func (s *Store) stopGuard() error {
	g := s.guard
	if g == nil {
		return nil
	}
	var err error
	g.stopOnce.Do(func() {
		if g.stop != nil {
			close(g.stop)
			<-g.done
		}
		err = s.advance()
	})
	return err
}
