package pricing

import (
	"context"
	"time"

	"github.com/scripnet/scrip/protocol"
)

// Agent decides a storage server's prices. The node asks it before each
// schedule it publishes, signs the rates it answers and publishes them,
// with the message, through a protocol.PriceSource.
type Agent interface {
	// Price returns the rates to publish in the state s. It returns an
	// error only if ctx ends first.
	Price(ctx context.Context, s State) (Decision, error)
}

// State is what a server's agent knows when it prices. The zero value is
// a server that offers no space and has sold nothing.
type State struct {
	// Now is the current time; agents take time from here only.
	Now time.Time
	// Capacity is the space the operator offers, in bytes.
	Capacity uint64
	// Used is the space held or allocated, in bytes. It may exceed
	// Capacity.
	Used uint64
	// Period is the length of each entry of Sold.
	Period time.Duration
	// Sold holds the bytes sold (allocated by paid calls) in each of the
	// last len(Sold) periods, oldest first; the last entry is the period
	// that ends at Now.
	Sold []uint64
	// Current holds the rates of the schedule published now, zero if
	// none. An agent that starts afresh may resume from them.
	Current protocol.Rates
}

// Decision is an agent's answer.
type Decision struct {
	// Rates are the prices to publish.
	Rates protocol.Rates
	// Message is optional text for clients asked to pay under Rates, at
	// most [MaxMessageSize] bytes; clients never parse it.
	Message string
}

// MaxMessageSize bounds [Decision.Message], as the protocol bounds the
// message of a PAYMENT_REQUIRED answer.
const MaxMessageSize = 256

// Limits are an operator's floor and cap on each rate. A zero field of
// Floor or Cap sets no bound on its rate; the zero value bounds nothing.
type Limits struct {
	Floor, Cap protocol.Rates
}

// Apply returns r with each rate raised to its floor and then lowered to
// its cap: where the two cross, the cap wins.
func (l Limits) Apply(r protocol.Rates) protocol.Rates {
	return protocol.Rates{
		PerCall:          bound(r.PerCall, l.Floor.PerCall, l.Cap.PerCall),
		StorePerGiBMonth: bound(r.StorePerGiBMonth, l.Floor.StorePerGiBMonth, l.Cap.StorePerGiBMonth),
		ReadPerGiB:       bound(r.ReadPerGiB, l.Floor.ReadPerGiB, l.Cap.ReadPerGiB),
		WritePerGiB:      bound(r.WritePerGiB, l.Floor.WritePerGiB, l.Cap.WritePerGiB),
	}
}

// bound raises v to lo, then lowers it to hi unless hi is 0.
func bound(v, lo, hi uint64) uint64 {
	v = max(v, lo)
	if hi != 0 {
		v = min(v, hi)
	}
	return v
}
