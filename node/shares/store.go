package shares

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/scripnet/scrip/protocol"
)

// Store keeps immutable shares in a directory: one file per share, with
// leases and corruption reports in a bbolt file beside them. Its methods
// are safe for concurrent use. Create one with [Open]; the zero Store is
// not usable.
//
// Store has the methods of protocol.StorageBackend, except that closing a
// share is [Store.CloseShare] ([Store.Close] closes the store);
// [Store.Backend] adapts it.
type Store struct {
	root     string
	sharesD  string
	incoming string
	db       *bolt.DB
	o        options

	mu        sync.Mutex // guards the fields below and alloc.expires, alloc.active
	capacity  uint64
	stored    uint64 // bytes of closed shares, until collected
	allocated uint64 // bytes of open shares
	allocs    map[key]*alloc

	dirMu sync.Mutex // orders creating and removing share directories

	closed atomic.Bool
	stop   context.CancelFunc
	done   chan struct{}
}

// alloc is an open share.
type alloc struct {
	mu      sync.Mutex // serializes file I/O on the share; guards created
	writer  peer.ID
	size    uint64
	state   atomic.Int32
	created bool   // the incoming file exists
	written uint64 // charged against the write budget; guarded by mu

	expires int64 // lease end, Unix ns; guarded by Store.mu
	active  int64 // last Allocate or Write, Unix ns; guarded by Store.mu
}

// alloc states.
const (
	allocPending int32 = iota // being allocated: not yet writable
	allocOpen
	allocGone // closed, abandoned or failed
)

// Open opens the share store in dir, creating it if needed, offering
// capacity bytes of shares. It recomputes the space used from the files
// and metadata on disk: it finishes a Close cut short by a crash, forgets
// metadata of share files that are gone, adopts share files without
// metadata (with the lease of [WithOrphanLease]) and deletes files of open
// shares that have no metadata. Open shares survive a restart, and their
// writers may go on writing.
//
// Defaults: clock time.Now; shares of at most [DefaultMaxShareSize] bytes
// numbered below [DefaultMaxShares], at most [DefaultMaxOpenShares] open
// at once; leases up to
// protocol.MaxLeaseSeconds; writes up to protocol.MaxWriteSize and reads
// up to protocol.MaxReadSize bytes; every Write synced; open shares
// abandoned after [DefaultAbandonAfter] without a write; a collector run
// every [DefaultCollectInterval]; orphans leased for [DefaultOrphanLease];
// a one-second wait for the metadata file's lock.
func Open(dir string, capacity uint64, opts ...Option) (*Store, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	s := &Store{
		root:     dir,
		sharesD:  filepath.Join(dir, "shares"),
		incoming: filepath.Join(dir, "incoming"),
		o:        o,
		capacity: capacity,
		allocs:   make(map[key]*alloc),
		done:     make(chan struct{}),
	}
	for _, d := range []string{s.sharesD, s.incoming} {
		if err := mkdirAllSync(d); err != nil {
			return nil, fmt.Errorf("shares: creating %s: %w", d, err)
		}
	}
	db, err := bolt.Open(filepath.Join(dir, "meta.db"), 0o600, &bolt.Options{Timeout: o.openTimeout})
	if err != nil {
		return nil, fmt.Errorf("shares: opening metadata: %w", err)
	}
	s.db = db
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	if o.collectInterval > 0 {
		go s.collector(ctx, o.collectInterval)
	} else {
		close(s.done)
	}
	return s, nil
}

// Close stops the collector and closes the metadata file. Calls after
// Close fail with [ErrClosed]; open shares stay open for the next Open.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.stop()
	<-s.done
	return s.db.Close()
}

func (s *Store) collector(ctx context.Context, every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Errors are retried at the next tick.
			_, _ = s.Collect(ctx)
		}
	}
}

func (s *Store) finalPath(k key) string    { return filepath.Join(s.sharesD, k.relPath()) }
func (s *Store) incomingPath(k key) string { return filepath.Join(s.incoming, k.relPath()) }

func (s *Store) now() time.Time { return s.o.now() }

// update runs fn in a read-write transaction of the metadata.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return closedErr(s.db.Update(fn))
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return closedErr(s.db.View(fn))
}

func closedErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// init creates the buckets and recovers the state from disk.
func (s *Store) init() error {
	now := s.now()
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("shares: creating bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keyVersion); {
		case v == nil:
			if err := meta.Put(keyVersion, []byte{layoutVersion}); err != nil {
				return err
			}
		case !bytes.Equal(v, []byte{layoutVersion}):
			return fmt.Errorf("%w: layout version %x, want %d", ErrCorrupt, v, layoutVersion)
		}
		return s.recover(tx, now)
	})
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// recover reconciles metadata and files; see Open.
func (s *Store) recover(tx *bolt.Tx, now time.Time) error {
	type change struct {
		k   key
		r   *record // nil: delete
		old *record
	}
	var changes []change
	closed := make(map[key]bool)
	open := make(map[key]bool)
	err := tx.Bucket(bucketShares).ForEach(func(kb, v []byte) error {
		k, err := keyFrom(kb)
		if err != nil {
			return err
		}
		r, err := decodeRecord(v)
		if err != nil {
			return err
		}
		final, err := exists(s.finalPath(k))
		if err != nil {
			return err
		}
		switch {
		case r.state == stateClosed && !final:
			changes = append(changes, change{k: k, old: r})
		case r.state == stateClosed:
			closed[k] = true
			s.stored += r.size
		case final:
			// A Close renamed the file and stopped before its record.
			done := *r
			done.state, done.writer = stateClosed, ""
			changes = append(changes, change{k: k, r: &done, old: r})
			if err := os.Remove(s.incomingPath(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			closed[k] = true
			s.stored += r.size
		default:
			created, err := exists(s.incomingPath(k))
			if err != nil {
				return err
			}
			a := &alloc{writer: r.writer, size: r.size, created: created, expires: r.expires, active: now.UnixNano()}
			a.state.Store(allocOpen)
			s.allocs[k] = a
			open[k] = true
			s.allocated += r.size
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Share files without a record are adopted.
	err = walkShares(s.sharesD, func(k key, path string, size int64) error {
		if closed[k] {
			return nil
		}
		r := &record{state: stateClosed, size: uint64(size), expires: expiresAt(now, s.o.orphanLease)}
		changes = append(changes, change{k: k, r: r})
		closed[k] = true
		s.stored += r.size
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range changes {
		if err := putRecord(tx, c.k, c.r, c.old); err != nil {
			return err
		}
	}
	// Incoming files without an open share are scraps.
	return walkShares(s.incoming, func(k key, path string, _ int64) error {
		if open[k] {
			return nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		removeEmptyDirs(s.incoming, k)
		return nil
	})
}

// walkShares calls fn for each regular file below base whose path is a
// share path.
func walkShares(base string, fn func(k key, path string, size int64) error) error {
	prefixes, err := os.ReadDir(base)
	if err != nil {
		return err
	}
	for _, p := range prefixes {
		if !p.IsDir() {
			continue
		}
		sis, err := os.ReadDir(filepath.Join(base, p.Name()))
		if err != nil {
			return err
		}
		for _, si := range sis {
			if !si.IsDir() {
				continue
			}
			dir := filepath.Join(base, p.Name(), si.Name())
			files, err := os.ReadDir(dir)
			if err != nil {
				return err
			}
			for _, f := range files {
				k, ok := parseRelPath(p.Name(), si.Name(), f.Name())
				if !ok || !f.Type().IsRegular() {
					continue
				}
				info, err := f.Info()
				if err != nil {
					return err
				}
				if err := fn(k, filepath.Join(dir, f.Name()), info.Size()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// putRecord replaces the record of k (old, nil if none) by r (nil to
// delete it, with its corruption reports), keeping the expiry index.
func putRecord(tx *bolt.Tx, k key, r, old *record) error {
	shares, expiry := tx.Bucket(bucketShares), tx.Bucket(bucketExpiry)
	if old != nil {
		if err := expiry.Delete(expiryKey(old.expires, k)); err != nil {
			return err
		}
	}
	if r == nil {
		if err := deleteAdvice(tx, k); err != nil {
			return err
		}
		return shares.Delete(k.bytes())
	}
	if err := expiry.Put(expiryKey(r.expires, k), nil); err != nil {
		return err
	}
	return shares.Put(k.bytes(), r.encode())
}

func getRecord(tx *bolt.Tx, k key) (*record, error) {
	v := tx.Bucket(bucketShares).Get(k.bytes())
	if v == nil {
		return nil, nil
	}
	return decodeRecord(v)
}

// Usage is the store's space accounting, in bytes.
type Usage struct {
	// Capacity is what the operator offers.
	Capacity uint64
	// Stored is held by closed shares (until their files are collected).
	Stored uint64
	// Allocated is reserved by open shares.
	Allocated uint64
	// Available is Capacity less Stored and Allocated, or zero.
	Available uint64
}

// Usage returns the space accounting.
func (s *Store) Usage() Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Usage{Capacity: s.capacity, Stored: s.stored, Allocated: s.allocated, Available: s.availableLocked()}
}

func (s *Store) availableLocked() uint64 {
	used := s.stored + s.allocated // each ≤ 2^62 · shares; no overflow in practice
	if used < s.stored || used >= s.capacity {
		return 0
	}
	return s.capacity - used
}

// SetCapacity changes the space offered. Shares already held stay; if they
// use more than the new capacity, no new share fits until enough expire.
func (s *Store) SetCapacity(capacity uint64) {
	s.mu.Lock()
	s.capacity = capacity
	s.mu.Unlock()
}

// Space returns the space that can still be allocated and the largest
// share size accepted.
func (s *Store) Space(ctx context.Context) (protocol.StorageSpace, error) {
	if err := s.live(ctx); err != nil {
		return protocol.StorageSpace{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return protocol.StorageSpace{Available: s.availableLocked(), MaxShareSize: s.o.maxShareSize}, nil
}

// live returns ErrClosed or the context's error.
func (s *Store) live(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}
