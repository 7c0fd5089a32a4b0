package shares

import (
	"fmt"
	"time"

	"github.com/scripnet/scrip/protocol"
)

// Defaults of the options.
const (
	// DefaultMaxShareSize is the default largest share: 64 GiB.
	DefaultMaxShareSize = 64 << 30
	// DefaultMaxShares is the default bound on share numbers: shares 0 to
	// 255 of each storage index, as in Tahoe-LAFS.
	DefaultMaxShares = 256
	// DefaultAbandonAfter is the default idle time after which an open
	// share is abandoned and its space released.
	DefaultAbandonAfter = time.Hour
	// DefaultCollectInterval is the default time between collector runs.
	DefaultCollectInterval = 10 * time.Minute
	// DefaultOrphanLease is the default lease given at Open to a share
	// file found without metadata (one copied in by hand, say).
	DefaultOrphanLease = 24 * time.Hour
	// DefaultMaxOpenShares is the default bound on shares open at once.
	DefaultMaxOpenShares = 1 << 16
	// MaxAdvicePerShare bounds the corruption reports kept per share;
	// later ones are dropped.
	MaxAdvicePerShare = 16
)

// Option configures [Open].
type Option func(*options) error

type options struct {
	now             func() time.Time
	maxShareSize    uint64
	maxShares       uint32
	maxOpen         int
	maxLease        time.Duration
	maxWrite        int
	maxRead         uint64
	syncWrites      bool
	abandonAfter    time.Duration
	collectInterval time.Duration
	orphanLease     time.Duration
	openTimeout     time.Duration
}

func defaultOptions() options {
	return options{
		now:             time.Now,
		maxShareSize:    DefaultMaxShareSize,
		maxShares:       DefaultMaxShares,
		maxOpen:         DefaultMaxOpenShares,
		maxLease:        protocol.MaxLeaseSeconds * time.Second,
		maxWrite:        protocol.MaxWriteSize,
		maxRead:         protocol.MaxReadSize,
		syncWrites:      true,
		abandonAfter:    DefaultAbandonAfter,
		collectInterval: DefaultCollectInterval,
		orphanLease:     DefaultOrphanLease,
		openTimeout:     time.Second,
	}
}

// WithClock sets the clock that leases, abandonment and collection run
// on. Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return fmt.Errorf("shares: nil clock")
		}
		o.now = now
		return nil
	}
}

// WithMaxShareSize sets the largest share size accepted, in bytes.
func WithMaxShareSize(n uint64) Option {
	return func(o *options) error {
		if n == 0 || n > 1<<62 {
			return fmt.Errorf("shares: max share size %d out of range", n)
		}
		o.maxShareSize = n
		return nil
	}
}

// WithMaxShares bounds share numbers: shares 0 to n−1 of a storage index.
func WithMaxShares(n uint32) Option {
	return func(o *options) error {
		if n == 0 || n > 1<<16 {
			return fmt.Errorf("shares: max shares %d out of range", n)
		}
		o.maxShares = n
		return nil
	}
}

// WithMaxOpenShares bounds the shares open (allocated, not yet closed) at
// once; an allocation beyond it is refused with [ErrNoSpace].
func WithMaxOpenShares(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("shares: max open shares %d < 1", n)
		}
		o.maxOpen = n
		return nil
	}
}

// WithSyncWrites sets whether each Write is synced to disk before it
// returns (the default). Off, a crash can lose data of open shares that
// writers were told was written; closed shares are synced either way.
func WithSyncWrites(on bool) Option {
	return func(o *options) error { o.syncWrites = on; return nil }
}

// WithAbandonAfter sets how long an open share may stay without a Write
// before the collector abandons it and releases its space.
func WithAbandonAfter(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("shares: abandon time %v not positive", d)
		}
		o.abandonAfter = d
		return nil
	}
}

// WithCollectInterval sets the time between runs of the collector
// goroutine that [Open] starts; 0 starts none (call [Store.Collect]).
func WithCollectInterval(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("shares: collect interval %v negative", d)
		}
		o.collectInterval = d
		return nil
	}
}

// WithOrphanLease sets the lease given at Open to share files found
// without metadata.
func WithOrphanLease(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("shares: orphan lease %v negative", d)
		}
		o.orphanLease = d
		return nil
	}
}

// WithOpenTimeout bounds the wait for the metadata file's lock, which
// another process using the same directory holds. Default: one second.
func WithOpenTimeout(d time.Duration) Option {
	return func(o *options) error { o.openTimeout = d; return nil }
}
