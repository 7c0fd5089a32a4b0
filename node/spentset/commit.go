package spentset

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Group commit.
//
// Every write is an op: a function run inside a bolt read-write
// transaction. An op MUST check everything before it writes, and return a
// plain error only before its first write: such an error refuses the op
// alone, and the other ops of the transaction still commit. An error after
// a write (bolt refused a Put, say) must be wrapped with abort: it rolls
// back the whole transaction, and the committer then runs each op of the
// batch in a transaction of its own, so that only the faulty op fails. An
// op may run more than once for that reason, so it sets its results only
// from what it read in the transaction that runs it.
//
// With group commit on, callers queue ops on a bounded channel and one
// goroutine, the committer, takes everything queued (up to the batch
// limit), runs it in one transaction, commits it with one fsync, and wakes
// each caller with its own result. There is no timer: while a commit is in
// flight the next batch accumulates in the queue, so batches grow with the
// load and an idle store commits a lone op at once.

// op states.
const (
	opQueued int32 = iota
	opTaken
	opCancelled
)

type op struct {
	fn    func(*bolt.Tx) error
	state atomic.Int32
	err   error
	done  chan struct{}
}

// abortError marks an op failure after a write.
type abortError struct{ err error }

func (e *abortError) Error() string { return e.err.Error() }
func (e *abortError) Unwrap() error { return e.err }

// abort wraps err, if not nil, as a failure after a write.
func abort(err error) error {
	if err == nil {
		return nil
	}
	return &abortError{err}
}

// CommitStats counts transactions and the ops they carried.
type CommitStats struct {
	// Commits is the number of read-write transactions committed (each
	// one fsync), including those whose every op was refused.
	Commits uint64
	// Ops is the number of ops run in them, refused ones included.
	Ops uint64
}

type committer struct {
	db       *bolt.DB
	group    bool
	maxBatch int
	queue    chan *op
	quit     chan struct{}
	stopped  chan struct{}
	closeMu  sync.RWMutex // held by direct (non-group) writes; Close locks it
	closed   bool
	commits  atomic.Uint64
	ops      atomic.Uint64
}

func newCommitter(db *bolt.DB, group bool, maxBatch, maxQueue int) *committer {
	c := &committer{
		db:       db,
		group:    group,
		maxBatch: maxBatch,
		quit:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if group {
		c.queue = make(chan *op, maxQueue)
		go c.run()
	} else {
		close(c.stopped)
	}
	return c
}

// do runs fn in a read-write transaction and returns its error once the
// transaction is durable (or refused).
//
// If ctx ends while the op waits, do returns ctx.Err(). If the committer
// had not yet taken the op, it will never run; if it had, the op may still
// commit, and its caller cannot tell.
func (c *committer) do(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !c.group {
		return c.direct(fn)
	}
	o := &op{fn: fn, done: make(chan struct{})}
	select {
	case <-c.quit:
		return ErrClosed
	default:
	}
	select {
	case c.queue <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.quit:
		return ErrClosed
	}
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		if o.state.CompareAndSwap(opQueued, opCancelled) {
			return ctx.Err() // never runs
		}
		// Taken: fn is running in the committer and writes the caller's
		// results; wait for its batch (one transaction) and report what
		// really happened.
		<-o.done
		return o.err
	case <-c.quit:
		if o.state.CompareAndSwap(opQueued, opCancelled) {
			return ErrClosed
		}
		// Taken: the committer finishes its batch before it stops.
		<-o.done
		return o.err
	}
}

// direct runs fn in a transaction of its own, in the caller's goroutine.
func (c *committer) direct(fn func(*bolt.Tx) error) error {
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	err := c.db.Update(func(tx *bolt.Tx) error { return safeCall(fn, tx) })
	c.commits.Add(1)
	c.ops.Add(1)
	return unwrapAbort(err)
}

// run is the committer goroutine.
func (c *committer) run() {
	defer close(c.stopped)
	batch := make([]*op, 0, c.maxBatch)
	for {
		batch = batch[:0]
		select {
		case <-c.quit:
			return
		case o := <-c.queue:
			batch = take(batch, o)
		}
		// Let the callers just woken by the last commit queue their next
		// writes before the batch is cut.
		runtime.Gosched()
	fill:
		for len(batch) < c.maxBatch {
			select {
			case o := <-c.queue:
				batch = take(batch, o)
			default:
				break fill
			}
		}
		if len(batch) > 0 {
			c.commit(batch)
		}
	}
}

// take appends o to batch unless its caller gave up first.
func take(batch []*op, o *op) []*op {
	if o.state.CompareAndSwap(opQueued, opTaken) {
		batch = append(batch, o)
	}
	return batch
}

// commit runs batch in one transaction and wakes its callers. If an op
// aborts, it runs each op alone instead.
func (c *committer) commit(batch []*op) {
	errs := make([]error, len(batch))
	err := c.db.Update(func(tx *bolt.Tx) error {
		for i, o := range batch {
			e := safeCall(o.fn, tx)
			if _, ok := errors.AsType[*abortError](e); ok {
				return e
			}
			errs[i] = e
		}
		return nil
	})
	if _, ok := errors.AsType[*abortError](err); ok && len(batch) > 1 {
		for _, o := range batch {
			c.commit([]*op{o})
		}
		return
	}
	c.commits.Add(1)
	c.ops.Add(uint64(len(batch)))
	for i, o := range batch {
		if err != nil {
			o.err = unwrapAbort(err)
		} else {
			o.err = errs[i]
		}
		close(o.done)
	}
}

// stop ends the committer after its current batch and waits for it, and
// makes later writes fail with ErrClosed.
func (c *committer) stop() {
	c.closeMu.Lock()
	c.closed = true
	c.closeMu.Unlock()
	select {
	case <-c.quit:
	default:
		close(c.quit)
	}
	<-c.stopped
}

func (c *committer) stats() CommitStats {
	return CommitStats{Commits: c.commits.Load(), Ops: c.ops.Load()}
}

// safeCall runs fn, turning a panic into an abort.
func safeCall(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &abortError{fmt.Errorf("spentset: panic in transaction: %v", p)}
		}
	}()
	return fn(tx)
}

func unwrapAbort(err error) error {
	if a, ok := errors.AsType[*abortError](err); ok {
		err = a.err
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}
