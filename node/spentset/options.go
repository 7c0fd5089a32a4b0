package spentset

import (
	"fmt"
	"math"
	"time"

	"github.com/scripnet/scrip/protocol"
)

// Defaults of the options.
const (
	// DefaultMaxBatch is the default bound on the ops of one transaction.
	DefaultMaxBatch = 256
	// DefaultMaxQueue is the default bound on ops waiting for the
	// committer; callers beyond it wait to be queued.
	DefaultMaxQueue = 1024
	// DefaultMaxAnswerSize is the default bound on a stored answer: a
	// full storage response.
	DefaultMaxAnswerSize = protocol.MaxStorageResponseSize
)

// KeysetLookup returns the deposit deadline (deposit_until, exclusive) of
// the keyset with the given ID, and false if the keyset is unknown.
type KeysetLookup func(keysetID [32]byte) (depositUntil time.Time, ok bool)

// Option configures [Open].
type Option func(*options) error

type options struct {
	group         bool
	maxBatch      int
	maxQueue      int
	maxAnswer     int
	bearerCap     uint64
	keysets       KeysetLookup
	openTimeout   time.Duration
	noCheckOnOpen bool
}

func defaultOptions() options {
	return options{
		group:       true,
		maxBatch:    DefaultMaxBatch,
		maxQueue:    DefaultMaxQueue,
		maxAnswer:   DefaultMaxAnswerSize,
		bearerCap:   math.MaxUint64,
		openTimeout: time.Second,
	}
}

// WithGroupCommit turns group commit on (the default) or off. Off, every
// write runs in a transaction of its own in the caller's goroutine, one
// fsync each; this exists to measure what group commit gains.
func WithGroupCommit(on bool) Option {
	return func(o *options) error { o.group = on; return nil }
}

// WithMaxBatch bounds the ops that share one transaction; n ≥ 1.
func WithMaxBatch(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("spentset: max batch %d < 1", n)
		}
		o.maxBatch = n
		return nil
	}
}

// WithMaxQueue bounds the ops waiting for the committer; n ≥ 1. A caller
// that finds the queue full waits (or gives up with its context).
func WithMaxQueue(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("spentset: max queue %d < 1", n)
		}
		o.maxQueue = n
		return nil
	}
}

// WithMaxAnswerSize bounds the answer stored for one request, in bytes.
func WithMaxAnswerSize(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("spentset: max answer size %d < 0", n)
		}
		o.maxAnswer = n
		return nil
	}
}

// WithBearerCap makes [Store.Record] refuse, with [ErrBearerCap], a request
// whose bearer (undesignated) coins would raise the undeposited bearer
// value above limit. The check and the write share one transaction, so
// concurrent calls cannot overshoot the cap together. Default: no cap.
func WithBearerCap(limit uint64) Option {
	return func(o *options) error { o.bearerCap = limit; return nil }
}

// WithKeysets sets how [Store.Record] learns each coin's deposit deadline,
// which [Store.Prune] uses. Record refuses a coin whose keyset the lookup
// does not know with [ErrUnknownKeyset]. Default: none; every coin is kept
// forever.
func WithKeysets(lookup KeysetLookup) Option {
	return func(o *options) error { o.keysets = lookup; return nil }
}

// WithOpenTimeout bounds the wait for the file lock at [Open], which
// another process holding the store keeps. Default: one second.
func WithOpenTimeout(d time.Duration) Option {
	return func(o *options) error { o.openTimeout = d; return nil }
}

// WithoutCheckOnOpen skips the full [Store.Check] that [Open] runs by
// default. The check reads every record once; skip it for very large
// stores.
func WithoutCheckOnOpen() Option {
	return func(o *options) error { o.noCheckOnOpen = true; return nil }
}
