package spentset

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func openCommitter(t *testing.T, maxBatch int) (*committer, *bolt.DB) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("b"))
		return err
	}))
	c := newCommitter(db, true, maxBatch, 64)
	t.Cleanup(func() {
		c.stop()
		db.Close()
	})
	return c, db
}

func put(k string) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(k), []byte("v")) }
}

func has(t *testing.T, db *bolt.DB, k string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket([]byte("b")).Get([]byte(k)) != nil
		return nil
	}))
	return ok
}

// blockCommitter occupies the committer with an op that waits for release,
// so that the next ops queue up into one batch.
func blockCommitter(t *testing.T, c *committer) (release func(), done <-chan error) {
	started, unblock := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- c.do(context.Background(), func(tx *bolt.Tx) error {
			close(started)
			<-unblock
			return nil
		})
	}()
	<-started
	return func() { close(unblock) }, errc
}

// waitQueued waits until n ops are queued.
func waitQueued(c *committer, n int) {
	for len(c.queue) < n {
		runtime.Gosched()
	}
}

// One batch holds a refused op, an op that fails after writing (abort) and
// one that panics: each gets its own error, the aborted and panicking ops
// leave nothing behind, and the good ops commit.
func TestCommitIsolation(t *testing.T) {
	c, db := openCommitter(t, 64)
	release, blocked := blockCommitter(t, c)

	refused := errors.New("refused")
	ops := []struct {
		key string
		fn  func(*bolt.Tx) error
		err error
	}{
		{"good1", put("good1"), nil},
		{"refused", func(*bolt.Tx) error { return refused }, refused},
		{"aborted", func(tx *bolt.Tx) error {
			if err := put("aborted")(tx); err != nil {
				return err
			}
			return abort(errors.New("after write"))
		}, errors.New("after write")},
		{"panic", func(tx *bolt.Tx) error {
			_ = put("panic")(tx)
			panic("boom")
		}, nil},
		{"good2", put("good2"), nil},
	}
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i, o := range ops {
		wg.Go(func() { errs[i] = c.do(context.Background(), o.fn) })
		waitQueued(c, i+1) // keep the order
	}
	release()
	require.NoError(t, <-blocked)
	wg.Wait()

	assert.NoError(t, errs[0])
	assert.ErrorIs(t, errs[1], refused)
	assert.EqualError(t, errs[2], "after write")
	assert.ErrorContains(t, errs[3], "panic")
	assert.NoError(t, errs[4])
	for _, k := range []string{"good1", "good2"} {
		assert.True(t, has(t, db, k), k)
	}
	for _, k := range []string{"aborted", "panic"} {
		assert.False(t, has(t, db, k), k)
	}
}

// Queued ops all go in one transaction, up to the batch limit.
func TestCommitBatchLimit(t *testing.T) {
	c, _ := openCommitter(t, 8)
	release, blocked := blockCommitter(t, c)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() { assert.NoError(t, c.do(context.Background(), put(fmt.Sprint(i)))) })
	}
	waitQueued(c, 20)
	before := c.stats()
	release()
	require.NoError(t, <-blocked)
	wg.Wait()
	after := c.stats()
	// 20 queued ops in batches of at most 8: 3 commits.
	assert.Equal(t, uint64(20), after.Ops-before.Ops-1)
	assert.Equal(t, uint64(3), after.Commits-before.Commits-1)
}

// An op whose context ends while it is queued never runs; one whose
// context ends after the committer took it waits for its commit and
// reports the real outcome.
func TestCommitCancel(t *testing.T) {
	c, db := openCommitter(t, 64)
	release, blocked := blockCommitter(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Bool
	errc := make(chan error, 1)
	go func() {
		errc <- c.do(ctx, func(tx *bolt.Tx) error { ran.Store(true); return put("cancelled")(tx) })
	}()
	waitQueued(c, 1)
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	release()
	require.NoError(t, <-blocked)
	require.NoError(t, c.do(context.Background(), put("after")))
	assert.False(t, ran.Load())
	assert.False(t, has(t, db, "cancelled"))

	// Cancelled after being taken: the caller waits for the batch and
	// learns that the write landed.
	ctx, cancel = context.WithCancel(context.Background())
	inTx, unblock := make(chan struct{}), make(chan struct{})
	go func() {
		errc <- c.do(ctx, func(tx *bolt.Tx) error {
			close(inTx)
			<-unblock
			return put("late")(tx)
		})
	}()
	<-inTx
	cancel()
	select {
	case err := <-errc:
		t.Fatalf("returned %v while its op was still running", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(unblock)
	assert.NoError(t, <-errc)
	assert.True(t, has(t, db, "late"))
}
