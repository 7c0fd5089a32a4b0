package shares

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// collectBatch bounds the shares one collector transaction removes.
const collectBatch = 1024

// Collected reports what a collection removed.
type Collected struct {
	// Expired counts closed shares whose leases had ended.
	Expired int
	// Abandoned counts open shares released: idle for longer than
	// [WithAbandonAfter] allows, or past their lease.
	Abandoned int
	// Freed is the space returned, in bytes.
	Freed uint64
}

// Collect deletes the closed shares whose leases have ended and releases
// the open shares that were abandoned or whose leases have ended, by the
// store's clock. Open runs it every [WithCollectInterval]; Allocate runs it
// when space is short. A share a writer is writing or closing right now is
// left for the next run.
func (s *Store) Collect(ctx context.Context) (Collected, error) {
	var total Collected
	for {
		if err := s.live(ctx); err != nil {
			return total, err
		}
		c, more, err := s.collectOnce()
		total.Expired += c.Expired
		total.Abandoned += c.Abandoned
		total.Freed += c.Freed
		if err != nil || !more {
			return total, err
		}
	}
}

// victim is a share a collection removes.
type victim struct {
	k      key
	r      *record // nil for a stale index entry
	al     *alloc  // an open share's allocation, locked
	stale  []byte  // an index key to delete
	closed bool
}

func (s *Store) collectOnce() (Collected, bool, error) {
	now := s.now()
	nowNs := now.UnixNano()
	var victims []victim
	var more bool
	err := s.update(func(tx *bolt.Tx) error {
		victims, more = victims[:0], false
		seen := make(map[key]bool)
		// Shares whose leases ended, oldest first.
		c := tx.Bucket(bucketExpiry).Cursor()
		for kb, _ := c.First(); kb != nil; kb, _ = c.Next() {
			if len(victims) >= collectBatch {
				more = true
				break
			}
			if len(kb) != 28 {
				victims = append(victims, victim{stale: append([]byte(nil), kb...)})
				continue
			}
			if int64(binary.BigEndian.Uint64(kb)) > nowNs {
				break
			}
			k, _ := keyFrom(kb[8:])
			r, err := getRecord(tx, k)
			if err != nil {
				return err
			}
			if r == nil || r.expires != int64(binary.BigEndian.Uint64(kb)) {
				victims = append(victims, victim{stale: append([]byte(nil), kb...)})
				continue
			}
			v, ok := s.victimFor(k, r)
			if ok {
				victims = append(victims, v)
				seen[k] = true
			}
		}
		// Open shares idle for too long.
		var idle []key
		s.mu.Lock()
		for k, al := range s.allocs {
			if !seen[k] && al.state.Load() == allocOpen && nowNs-al.active >= int64(s.o.abandonAfter) {
				idle = append(idle, k)
			}
		}
		s.mu.Unlock()
		for _, k := range idle {
			if len(victims) >= collectBatch {
				more = true
				break
			}
			r, err := getRecord(tx, k)
			if err != nil {
				return err
			}
			if r == nil || r.state != stateOpen {
				continue
			}
			if v, ok := s.victimFor(k, r); ok {
				victims = append(victims, v)
			}
		}
		return s.remove(tx, victims)
	})

	var out Collected
	s.mu.Lock()
	for _, v := range victims {
		switch {
		case v.r == nil:
		case err != nil:
			if v.al != nil {
				v.al.created = false // its file may be gone
			}
		case v.closed:
			out.Expired++
			out.Freed += v.r.size
			s.stored -= v.r.size
		default:
			out.Abandoned++
			if v.al != nil {
				out.Freed += v.al.size
				s.allocated -= v.al.size
				delete(s.allocs, v.k)
				v.al.state.Store(allocGone)
			}
		}
	}
	s.mu.Unlock()
	for _, v := range victims {
		if v.al != nil {
			v.al.mu.Unlock()
		}
	}
	if err == nil {
		s.dirMu.Lock()
		for _, v := range victims {
			if v.r != nil {
				removeEmptyDirs(s.sharesD, v.k)
				removeEmptyDirs(s.incoming, v.k)
			}
		}
		s.dirMu.Unlock()
	}
	return out, more && err == nil, err
}

// victimFor prepares share k, with record r, for removal. An open share
// being written or closed is skipped (false).
func (s *Store) victimFor(k key, r *record) (victim, bool) {
	v := victim{k: k, r: r, closed: r.state == stateClosed}
	if v.closed {
		return v, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	al := s.allocs[k]
	if al == nil {
		return v, true
	}
	if al.state.Load() != allocOpen || !al.mu.TryLock() {
		return v, false
	}
	if al.state.Load() != allocOpen {
		al.mu.Unlock()
		return v, false
	}
	v.al = al
	return v, true
}

// remove deletes the victims' files, syncs their directories, then their
// records, in tx.
func (s *Store) remove(tx *bolt.Tx, victims []victim) error {
	dirs := make(map[string]bool)
	for _, v := range victims {
		if v.r == nil {
			continue
		}
		path := s.incomingPath(v.k)
		if v.closed {
			path = s.finalPath(v.k)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		dirs[filepath.Dir(path)] = true
	}
	for d := range dirs {
		if err := syncDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	expiry := tx.Bucket(bucketExpiry)
	for _, v := range victims {
		if v.r == nil {
			if err := expiry.Delete(v.stale); err != nil {
				return err
			}
			continue
		}
		if err := putRecord(tx, v.k, nil, v.r); err != nil {
			return err
		}
	}
	return nil
}
