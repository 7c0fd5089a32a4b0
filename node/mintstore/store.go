package mintstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/protocol"
)

var (
	_ protocol.MintStore     = (*Store)(nil)
	_ protocol.FundingLedger = (*Store)(nil)
)

// Store is a mint's durable state in one bbolt file: a
// [protocol.MintStore] and [protocol.FundingLedger], the keysets that
// [Keys] manages, and the counters of [Store.Audit]. Its methods are safe
// for concurrent use; each write is one bbolt transaction, committed and
// synced before the method returns. Create one with [Open]; the zero Store
// is not usable.
type Store struct {
	db    *bolt.DB
	path  string
	guard *guard // the restore guard (guard.go)
}

// Option configures [Open].
type Option func(*options)

type options struct {
	lockTimeout   time.Duration
	guardFile     string
	guardInterval time.Duration
}

// WithLockTimeout sets how long [Open] waits for the file lock that
// another process holds. Zero waits forever.
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) { o.lockTimeout = d }
}

// Open opens the store in the bbolt file at path, creating it if needed.
// The file holds the mint's keyset secrets, so Open creates it with mode
// 0600 and narrows the mode of an existing file to 0600.
//
// Defaults: a one-second wait for the file lock ([WithLockTimeout]). Every
// commit is synced (bbolt's NoSync is off); the free-page list is not
// written at each commit but rebuilt when the file is opened, which saves
// a write per commit and loses nothing on a crash.
//
// Open runs the restore guard (see [GuardReport]): if the file is a copy
// made by [Store.Backup], or is not in the epoch its guard file (path +
// [GuardSuffix], or [WithGuardFile]) names, Open treats it as restored
// from a copy and retires every keyset it holds, so that none answers a
// nonce afresh ([ErrKeysetRetired]); [Store.Guard] says what it did. It
// writes the guard file before it returns, and keeps it up to date until
// [Store.Close].
func Open(path string, opts ...Option) (*Store, error) {
	o := options{lockTimeout: time.Second, guardFile: path + GuardSuffix, guardInterval: DefaultGuardInterval}
	for _, opt := range opts {
		opt(&o)
	}
	if o.guardFile == "" {
		o.guardFile = path + GuardSuffix
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        o.lockTimeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("mintstore: opening %s: %w", path, err)
	}
	if err := restrictMode(path); err != nil {
		db.Close()
		return nil, err
	}
	if err := initLayout(db); err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, path: path}
	if err := s.openGuard(&o); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// restrictMode makes the file readable and writable by its owner only.
func restrictMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("mintstore: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return fmt.Errorf("mintstore: %w", err)
		}
	}
	return nil
}

func initLayout(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("mintstore: creating bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keyVersion); {
		case v == nil:
			return meta.Put(keyVersion, []byte{layoutVersion})
		case !bytes.Equal(v, []byte{layoutVersion}):
			return fmt.Errorf("%w: layout version %x, want %d", ErrCorrupt, v, layoutVersion)
		}
		return nil
	})
}

// Close closes the file, after advancing the restore guard's epoch if
// rows were inserted since it last did. Calls after Close fail; closing
// twice is harmless.
func (s *Store) Close() error {
	err := s.stopGuard()
	return errors.Join(err, s.db.Close())
}

// errNoWrite is what a transaction function returns when it has answered
// without writing anything (a retry, say): update then rolls the
// transaction back instead of committing it, which saves the syncs of a
// commit. Everything such an answer read was committed, and so synced,
// by an earlier transaction.
var errNoWrite = errors.New("mintstore: nothing to write")

// update runs fn in one write transaction, unless ctx has ended already.
// bbolt runs write transactions one at a time, so concurrent calls behave
// as if run in turn; fn's error rolls back everything it wrote, and
// errNoWrite is no error.
func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.Update(fn); err != nil && err != errNoWrite {
		return err
	}
	return nil
}

// view runs fn in one read transaction, unless ctx has ended already.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// closedFlags caches, for one transaction, the closed flags of keysets.
type closedFlags struct {
	b *bolt.Bucket
	m map[[32]byte]byte
}

func newClosedFlags(tx *bolt.Tx) *closedFlags {
	return &closedFlags{b: tx.Bucket(bucketClosed)}
}

func (c *closedFlags) get(id [32]byte) byte {
	if f, ok := c.m[id]; ok {
		return f
	}
	var f byte
	if v := c.b.Get(id[:]); len(v) == 1 {
		f = v[0]
	}
	if c.m == nil {
		c.m = make(map[[32]byte]byte, 1)
	}
	c.m[id] = f
	return f
}

// tallies gathers the changes of one transaction to the counters of
// bucketTally and writes them once, at the end.
type tallies map[[40]byte]*tally

func (t tallies) of(keyset [32]byte, amount uint64) *tally {
	var k [40]byte
	copy(k[:], tallyKey(keyset, amount))
	d := t[k]
	if d == nil {
		d = new(tally)
		t[k] = d
	}
	return d
}

func (t tallies) write(tx *bolt.Tx) error {
	b := tx.Bucket(bucketTally)
	for k, d := range t {
		cur, err := decodeTally(b.Get(k[:]))
		if err != nil {
			return err
		}
		if err := cur.add(*d); err != nil {
			return err
		}
		if err := b.Put(bytes.Clone(k[:]), encodeTally(cur)); err != nil {
			return err
		}
	}
	return nil
}
