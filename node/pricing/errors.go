package pricing

import "errors"

// Sentinel errors. Errors returned wrap one of them; test with errors.Is.
var (
	// ErrAgentStart reports an external agent that could not be started.
	ErrAgentStart = errors.New("pricing: agent did not start")
	// ErrAgentExited reports an external agent that exited, or closed its
	// input or output, before answering.
	ErrAgentExited = errors.New("pricing: agent exited")
	// ErrAgentTimeout reports an external agent that did not answer in
	// time.
	ErrAgentTimeout = errors.New("pricing: agent did not answer in time")
	// ErrAgentGarbage reports an answer line that breaks the external
	// agent protocol: too long, not JSON, an unknown or missing field, a
	// wrong ID, a bad message.
	ErrAgentGarbage = errors.New("pricing: agent answered garbage")

	// ErrNoPrices reports a market that has seen no prices to set a
	// ceiling from.
	ErrNoPrices = errors.New("pricing: no prices seen")
	// ErrTooFewServers reports a placement that found fewer than happy
	// servers within the ceiling and the budget. The error returned is a
	// *[SelectError].
	ErrTooFewServers = errors.New("pricing: too few servers qualify")
	// ErrOverBudget reports a payment the budget does not allow.
	ErrOverBudget = errors.New("pricing: over budget")
	// ErrAboveCeiling reports a price above the market's ceiling (with
	// any premium) for the call, which the client does not pay.
	ErrAboveCeiling = errors.New("pricing: price above the ceiling")
	// ErrBadHistory reports a market history that does not decode, or
	// that cannot be restored: its bytes are damaged, too many, or of
	// another version or unit. See [ParseHistory].
	ErrBadHistory = errors.New("pricing: bad market history")
	// ErrUnit reports a schedule in a unit other than the market's.
	ErrUnit = errors.New("pricing: schedule in another unit")
	// ErrArgument reports an argument out of range.
	ErrArgument = errors.New("pricing: bad argument")
)
