package protocol

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/internal/crashpoint"
	"github.com/scripnet/scrip/protocol/pb"
)

// Paid calls, the server's side. A [Paywall] stands in front of a service's
// operations: the service decodes each request body into an [Operation]
// that says what the call costs and how to serve it, and the paywall
// prices it under a published schedule, checks and verifies its coins,
// records them in a [SpentStore] and only then serves it. See the paid-call
// state machine in SPEC.md §8.

// Errors of paid calls found on this side. Errors a peer answers with are
// the code sentinels of errors.go.
var (
	// ErrNoSchedule reports a [PriceSource] with no schedule valid now.
	ErrNoSchedule = errors.New("protocol: no price schedule valid now")
	// ErrGaveUp reports a paid call the client gave up paying for: after
	// its limit on payment rounds, for want of a [Payer], or by
	// [PayComputed]. (Another policy's error is returned as it is.)
	ErrGaveUp = errors.New("protocol: gave up paying")
)

// PriceSource gives a server's signed price schedules. A server honours
// every schedule it published until the schedule's NotAfter, so Lookup
// must find each schedule Current has returned until then.
type PriceSource interface {
	// Current returns the schedule the server publishes now, valid at
	// now, and an optional message from its pricing agent for clients
	// that are asked to pay under it. It returns an error wrapping
	// [ErrNoSchedule] if there is none.
	Current(now time.Time) (s *SignedSchedule, message string, err error)
	// Lookup returns the schedule with the given ID if the server
	// published it, expired or not.
	Lookup(id [ScheduleIDSize]byte) (*SignedSchedule, bool)
}

// SpentRequest is what a [SpentStore] holds for one paid request.
type SpentRequest struct {
	// ID is the request ID.
	ID [RequestIDSize]byte
	// Digest is the digest of the request body the coins paid for.
	Digest [DigestSize]byte
	// Value is the total amount of the coins recorded for the request.
	Value uint64
	// Coins are the public keys of those coins.
	Coins [][32]byte
	// Answered reports whether an answer is stored; Answer holds it.
	Answered bool
	Answer   []byte
	// Replay is set by [SpentStore.Record] when the request was recorded
	// before with the same digest and nothing new was written.
	Replay bool
}

// CoinStatus is what a [SpentStore] knows of one coin.
type CoinStatus struct {
	// Pub is the coin's public key.
	Pub [32]byte
	// State is COIN_UNKNOWN, COIN_RECORDED or COIN_DEPOSITED.
	State pb.CoinState
	// RequestID is the request the coin was recorded for; zero for an
	// unknown coin.
	RequestID [RequestIDSize]byte
}

// SpentStore is a server's spent set: the coins it accepted, keyed by coin
// public key, the request each paid for and the answer given. The
// in-memory [MemSpentStore] serves tests and benchmarks; a durable one
// lives in package node. Every method that writes MUST be durable before it
// returns: the server answers the call right after.
type SpentStore interface {
	// Lookup returns the record of request id, with its answer if one is
	// stored, or an error wrapping [ErrNotFound].
	Lookup(ctx context.Context, id [RequestIDSize]byte) (*SpentRequest, error)
	// Record atomically records spends, worth value in all, as the payment
	// of request id with the given digest: every coin or none. If id is
	// recorded already with this digest it writes nothing and returns the
	// stored record with Replay set; with another digest it fails with an
	// error wrapping [ErrBadRequest]. If any coin is recorded for another
	// request it fails with an error wrapping [ErrDoubleSpend] (a
	// *[DoubleSpendError] names the coin) and writes nothing. A store that
	// will not take the coins now (a cap on undeposited bearer value, say)
	// fails with an error wrapping [ErrRateLimited] and writes nothing;
	// the call is then answered RATE_LIMITED. The spends are verified and
	// of distinct coins.
	Record(ctx context.Context, id [RequestIDSize]byte, digest [DigestSize]byte, spends []*coin.Spend, value uint64) (*SpentRequest, error)
	// Answer stores body as the answer of request id with the given
	// digest, so that a retry gets it. The first answer stored is kept.
	Answer(ctx context.Context, id [RequestIDSize]byte, digest [DigestSize]byte, body []byte) error
	// CoinStatus returns what the store knows of each coin, in order.
	CoinStatus(ctx context.Context, pubs [][32]byte) ([]CoinStatus, error)
}

// DoubleSpendError reports a coin recorded for another request. It matches
// [ErrDoubleSpend] under errors.Is.
type DoubleSpendError struct {
	// Coin is the public key of the coin already recorded.
	Coin [32]byte
}

// Error names the coin in hex.
func (e *DoubleSpendError) Error() string {
	return fmt.Sprintf("%v: coin %s already recorded for another request", ErrDoubleSpend, hex.EncodeToString(e.Coin[:]))
}

// Unwrap returns [ErrDoubleSpend].
func (e *DoubleSpendError) Unwrap() error { return ErrDoubleSpend }

// DepositPolicy decides whether a server takes bearer (undesignated)
// coins. A bearer coin shown to two servers can pay both until one of them
// deposits it, so a server takes them only while its undeposited bearer
// value stays under a cap, and beyond that deposits before serving.
// [BearerCap] is the usual policy.
type DepositPolicy interface {
	// AdmitBearer is called with the bearer spends of a call, verified,
	// before they are recorded. It returns nil to take them, possibly
	// after depositing them at the mint; or an error, which refuses the
	// call with nothing recorded (an [*Error] is answered as it is),
	// except a [*DepositUnsettledError], after which the paywall records
	// the coins the mint may hold and answers INTERNAL. If the coins are
	// then not recorded after all, the paywall calls undo, which must not
	// be nil when err is nil (it may be nil with a
	// [*DepositUnsettledError]).
	AdmitBearer(ctx context.Context, digest [DigestSize]byte, spends []*coin.Spend) (undo func(), err error)
}

// DepositUnsettledError is what a [DepositPolicy] returns when it sent a
// call's bearer coins to the mint before serving the call and cannot
// promise the client that none of them was taken: the mint did not answer
// (it may have credited them to the server before the connection broke),
// or it credited some coins and refused, or did not look at, others. The
// paywall then records the call's coins, all but those in Refused, as
// credit for the request, just as if it were about to serve it, and
// answers INTERNAL with Reason. A retry of the same request is served on
// that credit (after the policy's [CreditPolicy] check, if it has one);
// a client that does not retry has been told that its coins may be gone,
// and the server's spent set holds every coin the mint may have credited
// to it.
type DepositUnsettledError struct {
	// Refused are the public keys of the coins the mint refused for good
	// (double spent, invalid, expired, revoked): not the server's, and
	// not recorded.
	Refused [][32]byte
	// Reason is the message of the INTERNAL answer.
	Reason string
	// Err is the mint's failure, if any, for the server's logs.
	Err error
}

// Error returns the reason, and the mint's failure if any.
func (e *DepositUnsettledError) Error() string {
	if e.Err != nil {
		return "protocol: deposit before serving unsettled: " + e.Reason + ": " + e.Err.Error()
	}
	return "protocol: deposit before serving unsettled: " + e.Reason
}

// Unwrap returns the mint's failure.
func (e *DepositUnsettledError) Unwrap() error { return e.Err }

// CreditPolicy may be implemented by a [DepositPolicy] that must agree
// before a request is served on the credit of coins recorded earlier (a
// retry after the operation failed, after a [DepositUnsettledError], or
// after the server restarted). A server uses it to keep its bearer cap:
// coins recorded while the mint's verdict was unknown are deposited
// before the retry is served.
type CreditPolicy interface {
	// AdmitCredit is called with the record of a request that has no
	// stored answer, once its checks and price have passed again, before
	// it is served on its coins' credit. An error refuses to serve it now
	// and is answered INTERNAL (the coins stay credit for a later retry).
	AdmitCredit(ctx context.Context, rec *SpentRequest) error
}

// Operation is one decoded request, as a [Paywall] sees it.
type Operation struct {
	// RequestID is the request ID from the body; [RequestIDSize] bytes,
	// required for a paid operation.
	RequestID []byte
	// ScheduleID is the ID of the schedule the caller paid under, from the
	// body: [ScheduleIDSize] bytes, or empty for none.
	ScheduleID []byte
	// Paid marks an operation that must be paid for. A free operation is
	// checked and served at once and must carry no spends.
	Paid bool
	// Usage is what a paid operation consumes; its price is
	// [Quote] of the schedule's rates and Usage.
	Usage Usage
	// Replay marks a paid operation whose answer is not stored: a retry
	// of it runs Serve again, free, but only so often (see
	// [WithReplayLimit]); beyond that it is answered INTERNAL. Set it for
	// reads of immutable data, whose answers are large and always the
	// same.
	Replay bool
	// Check, if not nil, refuses a request the server cannot serve (no
	// space, no such share, bad parameters, an answer that could not be
	// sent) before any coin is verified or recorded. Its error is
	// answered as it is. It runs once the request's turn has come (one
	// attempt per request ID at a time), so it may compute and set Usage
	// from the server's state; Serve must then do no more than what was
	// priced. A retry served on the credit of recorded coins runs Check
	// again and is priced again: if it now costs more than was recorded,
	// it is answered INTERNAL and the coins stay credit.
	Check func(ctx context.Context) error
	// Serve performs the operation and returns the response body.
	// Required. For a paid operation it runs only once the coins are
	// recorded; if it fails, they remain credit for a retry of the same
	// request.
	Serve func(ctx context.Context) ([]byte, error)
}

// Decoder turns the body of a request from remote into an [Operation].
// Its errors are answered as they are: an *[Error], or a sentinel such as
// [ErrMalformed] (BAD_REQUEST).
type Decoder func(ctx context.Context, remote peer.ID, body []byte) (*Operation, error)

// Paywall charges for the operations of a service: it prices each call
// under the server's published schedules, checks and verifies the coins
// that pay for it (batching verification across concurrent calls, see
// [BatchVerifier]), records them atomically in a [SpentStore] and then
// serves it. A retry of a request (same request ID, same body) gets the
// recorded answer and is never charged twice. It is safe for concurrent
// use.
type Paywall struct {
	self        peer.ID
	designation [32]byte
	prices      PriceSource
	keysets     coin.Keysets
	spent       SpentStore
	deposit     DepositPolicy
	verifier    *BatchVerifier
	now         func() time.Time
	replays     int
	replayFor   time.Duration
	keysetMiss  func(ctx context.Context, id [32]byte) bool

	mu      sync.Mutex
	flights map[[RequestIDSize]byte]chan struct{}
	served  replayTable // guarded by mu
}

// PaywallOption configures [NewPaywall].
type PaywallOption func(*paywallConfig)

type paywallConfig struct {
	now        func() time.Time
	deposit    DepositPolicy
	verifier   *BatchVerifier
	batch      []BatchOption
	replays    int
	replayFor  time.Duration
	keysetMiss func(ctx context.Context, id [32]byte) bool
}

// Defaults of [NewPaywall].
const (
	// DefaultReplays is how many times a paywall serves a Replay
	// operation (a Read) again, for retries of one request, after its
	// first answer.
	DefaultReplays = 1
	// DefaultReplayMemory is how long a paywall remembers how often it
	// answered a Replay operation.
	DefaultReplayMemory = time.Hour
)

// WithReplayLimit sets how many times a Replay operation is served again
// for retries of one request after its first answer (at least 0), and
// how long the paywall remembers the count (at least a second). It keeps
// the counts of at most 65,536 requests, in memory: a restart, or a
// request forgotten, may be served once more.
func WithReplayLimit(n int, memory time.Duration) PaywallOption {
	return func(c *paywallConfig) { c.replays, c.replayFor = max(n, 0), max(memory, time.Second) }
}

// WithPaywallClock sets the clock against which schedules and keyset
// windows are checked.
func WithPaywallClock(now func() time.Time) PaywallOption {
	return func(c *paywallConfig) { c.now = now }
}

// WithDepositPolicy sets the policy for bearer coins.
func WithDepositPolicy(p DepositPolicy) PaywallOption {
	return func(c *paywallConfig) { c.deposit = p }
}

// WithKeysetMiss sets a function the paywall calls when a spend names a
// keyset it does not know, before it refuses the call: a server fetches
// the mint's keysets again (at most so often; the function decides), so
// that coins of a keyset the mint has just published pay at once. If it
// returns true, the paywall looks the keyset up again.
func WithKeysetMiss(f func(ctx context.Context, id [32]byte) bool) PaywallOption {
	return func(c *paywallConfig) { c.keysetMiss = f }
}

// WithBatchOptions configures the paywall's own [BatchVerifier].
func WithBatchOptions(opts ...BatchOption) PaywallOption {
	return func(c *paywallConfig) { c.batch = append(c.batch, opts...) }
}

// WithVerifier makes the paywall verify coins with v, which must verify
// spends for the same server, under the same keysets, in
// [coin.WindowSpend]. Several paywalls of one server may share one.
func WithVerifier(v *BatchVerifier) PaywallOption {
	return func(c *paywallConfig) { c.verifier = v }
}

// NewPaywall returns the paywall of server self, which prices calls with
// prices, accepts coins of the keysets that keysets knows (a lookup error
// wrapping [ErrRevokedKeyset] marks a revoked keyset) and records them in
// spent.
//
// Defaults: clock time.Now; deposit policy [NewBearerCap]
// ([DefaultBearerCap], no deposit before serving); a [BatchVerifier] of
// its own with its defaults and the paywall's clock; [DefaultReplays]
// replays remembered for [DefaultReplayMemory].
func NewPaywall(self peer.ID, prices PriceSource, keysets coin.Keysets, spent SpentStore, opts ...PaywallOption) *Paywall {
	c := paywallConfig{now: time.Now, replays: DefaultReplays, replayFor: DefaultReplayMemory}
	for _, o := range opts {
		o(&c)
	}
	if c.deposit == nil {
		c.deposit = NewBearerCap(DefaultBearerCap, nil)
	}
	if c.verifier == nil {
		v := &coin.Verifier{Keysets: keysets, Server: []byte(self), Window: coin.WindowSpend}
		c.verifier = NewBatchVerifier(v, append([]BatchOption{WithBatchClock(c.now)}, c.batch...)...)
	}
	return &Paywall{
		self:        self,
		designation: coin.Designation([]byte(self)),
		prices:      prices,
		keysets:     keysets,
		spent:       spent,
		deposit:     c.deposit,
		verifier:    c.verifier,
		now:         c.now,
		replays:     c.replays,
		replayFor:   c.replayFor,
		keysetMiss:  c.keysetMiss,
		flights:     make(map[[RequestIDSize]byte]chan struct{}),
		served:      replayTable{n: make(map[[RequestIDSize]byte]replayCount)},
	}
}

// Self returns the server the paywall charges for.
func (p *Paywall) Self() peer.ID { return p.self }

// Prices returns the paywall's price source.
func (p *Paywall) Prices() PriceSource { return p.prices }

// Spent returns the paywall's spent store.
func (p *Paywall) Spent() SpentStore { return p.spent }

// Verifier returns the paywall's batch verifier.
func (p *Paywall) Verifier() *BatchVerifier { return p.verifier }

// Now returns the time on the paywall's clock.
func (p *Paywall) Now() time.Time { return p.now() }

// Handler returns a [Handler] for protocol protocolID (which the request
// digest names) that decodes each request body with decode and serves it
// behind the paywall.
func (p *Paywall) Handler(protocolID string, decode Decoder) Handler {
	return func(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
		body, err := p.Serve(ctx, remote, protocolID, req, decode)
		if err != nil {
			return nil, err
		}
		return &pb.Response{Body: body}, nil
	}
}

// Serve answers one request from remote on protocol protocolID: it
// decodes the body with decode and runs the paid-call state machine. It
// returns the response body, or the error to answer with.
func (p *Paywall) Serve(ctx context.Context, remote peer.ID, protocolID string, req *pb.Request, decode Decoder) ([]byte, error) {
	op, err := decode(ctx, remote, req.Body)
	if err != nil {
		return nil, err
	}
	if op == nil || op.Serve == nil {
		return nil, &Error{Code: pb.Code_INTERNAL, Message: "operation has no handler"}
	}
	if !op.Paid {
		if len(req.Spends) > 0 {
			return nil, badRequest("a free operation carries no spends")
		}
		if op.Check != nil {
			if err := op.Check(ctx); err != nil {
				return nil, err
			}
		}
		return op.Serve(ctx)
	}
	if len(op.RequestID) != RequestIDSize {
		return nil, badRequest(fmt.Sprintf("request ID is %d bytes, want %d", len(op.RequestID), RequestIDSize))
	}
	if n := len(op.ScheduleID); n != 0 && n != ScheduleIDSize {
		return nil, badRequest(fmt.Sprintf("schedule ID is %d bytes, want %d", n, ScheduleIDSize))
	}
	id := [RequestIDSize]byte(op.RequestID)
	digest := RequestDigest(protocolID, req.Body)

	// One attempt per request ID at a time, so that a retry racing its
	// original waits for the original's answer.
	release, err := p.hold(ctx, id)
	if err != nil {
		return nil, err
	}
	defer release()

	rec, err := p.spent.Lookup(ctx, id)
	switch {
	case err == nil:
		return p.again(ctx, rec, digest, op)
	case !errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("protocol: looking up request: %w", internalOnly(err))
	}

	var announced *Announced
	if len(req.Spends) > 0 {
		// Let a batch being formed wait for these spends.
		announced = p.verifier.AnnounceFrom(remote)
		defer announced.Cancel()
	}
	// Before any coin: can the server serve the call at all?
	if op.Check != nil {
		if err := op.Check(ctx); err != nil {
			return nil, err
		}
	}
	now := p.now()
	sched, quote, err := p.price(op, now)
	if err != nil {
		return nil, err
	}
	if len(req.Spends) == 0 {
		if quote == 0 {
			return op.Serve(ctx)
		}
		return nil, p.askPayment(pb.Code_PAYMENT_REQUIRED, sched, quote, "", "payment required")
	}
	spends, bearer, value, err := p.parseSpends(ctx, req.Spends, sched, now)
	if err != nil {
		return nil, err
	}
	if value < quote {
		return nil, p.askPayment(pb.Code_INSUFFICIENT_PAYMENT, sched, quote, "",
			fmt.Sprintf("paid %d, price %d", value, quote))
	}
	items := make([]coin.Item, len(spends))
	for i, s := range spends {
		items[i] = coin.Item{Spend: s, Digest: digest}
	}
	if err := p.verifier.VerifyAnnounced(ctx, remote, items, announced); err != nil {
		return nil, spendError(err)
	}
	undo := func() {}
	if len(bearer) > 0 {
		u, err := p.deposit.AdmitBearer(ctx, digest, bearer)
		if ue, ok := errors.AsType[*DepositUnsettledError](err); ok {
			return nil, p.recordUnsettled(ctx, id, digest, spends, u, ue)
		}
		if err != nil {
			return nil, err
		}
		undo = u
	}
	rec, err = p.spent.Record(ctx, id, digest, spends, value)
	if err != nil {
		undo()
		var ds *DoubleSpendError
		switch {
		case errors.As(err, &ds):
			return nil, &Error{Code: pb.Code_DOUBLE_SPEND,
				Message: "coin " + hex.EncodeToString(ds.Coin[:]) + " already spent on another request"}
		case errors.Is(err, ErrDoubleSpend):
			return nil, &Error{Code: pb.Code_DOUBLE_SPEND, Message: "a coin is already spent on another request"}
		case errors.Is(err, ErrBadRequest):
			return nil, badRequest("request ID reused with another body")
		case errors.Is(err, ErrRateLimited):
			return nil, &Error{Code: pb.Code_RATE_LIMITED,
				Message: "the server takes no more of these coins now (too much undeposited bearer value); pay with coins designated to it, or retry later"}
		}
		return nil, fmt.Errorf("protocol: recording coins: %w", internalOnly(err))
	}
	crashpoint.Hit("server/after-record")
	if rec.Replay {
		undo()
		return p.again(ctx, rec, digest, op)
	}
	return p.run(ctx, id, digest, op)
}

// unsettledRecordTimeout bounds the recording of coins the mint may have
// credited, which goes on when the call's own time is up: the mint may
// hold them whether the caller is still there or not.
const unsettledRecordTimeout = 10 * time.Second

// recordUnsettled records the coins of a call whose bearer coins the mint
// may have credited to the server (see [DepositUnsettledError]): every
// spend but those the mint refused, as credit for request id, and returns
// the INTERNAL answer, which tells the client that its coins may be taken
// and that a retry of the same request is served on their credit. undo,
// if not nil, is called if nothing is recorded.
func (p *Paywall) recordUnsettled(ctx context.Context, id [RequestIDSize]byte, digest [DigestSize]byte, spends []*coin.Spend, undo func(), ue *DepositUnsettledError) error {
	answer := &Error{Code: pb.Code_INTERNAL, Message: ue.Reason}
	refused := make(map[[32]byte]bool, len(ue.Refused))
	for _, pub := range ue.Refused {
		refused[pub] = true
	}
	var kept []*coin.Spend
	var value uint64
	for _, s := range spends {
		if !refused[s.Pub] {
			kept = append(kept, s)
			value += s.Amount // a verified call's total does not overflow
		}
	}
	if undo == nil {
		undo = func() {}
	}
	if len(kept) == 0 {
		undo()
		return answer
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unsettledRecordTimeout)
	defer cancel()
	rec, err := p.spent.Record(rctx, id, digest, kept, value)
	if err != nil {
		undo()
		// Still INTERNAL: the mint may hold the coins whatever this
		// store says.
		return fmt.Errorf("protocol: recording coins the mint may hold: %w: %w", answer, internalOnly(err))
	}
	if rec.Replay {
		undo()
	}
	return answer
}

// again answers a request already recorded: from its stored answer, or,
// if it has none (it failed, or the server stopped, or the mint's verdict
// on its deposit was unsettled, or it is a Replay operation), by serving
// it again on the credit of its coins, if they still pay for it and the
// deposit policy, if it is a [CreditPolicy], agrees.
func (p *Paywall) again(ctx context.Context, rec *SpentRequest, digest [DigestSize]byte, op *Operation) ([]byte, error) {
	if rec.Digest != digest {
		return nil, badRequest("request ID reused with another body")
	}
	if rec.Answered {
		return rec.Answer, nil
	}
	if op.Replay {
		if n := p.servedCount(rec.ID); n > p.replays {
			return nil, &Error{Code: pb.Code_INTERNAL, Message: fmt.Sprintf(
				"RATE_LIMITED: this request was answered %d times already; a new request pays again", n)}
		}
	}
	if err := p.covered(ctx, rec, op); err != nil {
		return nil, err
	}
	if c, ok := p.deposit.(CreditPolicy); ok {
		if err := c.AdmitCredit(ctx, rec); err != nil {
			return nil, creditError(err)
		}
	}
	return p.run(ctx, rec.ID, digest, op)
}

// covered checks that the coins recorded for a request still pay for
// serving it again: the operation's checks pass and its price, under the
// schedule the body names (the current one if the server no longer knows
// it, or it names none), is at most the value recorded. The price of an
// operation can depend on the server's state (AddLease). Its errors are
// INTERNAL answers: the coins stay credit for the request.
func (p *Paywall) covered(ctx context.Context, rec *SpentRequest, op *Operation) error {
	if op.Check != nil {
		if err := op.Check(ctx); err != nil {
			return creditError(err)
		}
	}
	var s *SignedSchedule
	if len(op.ScheduleID) == ScheduleIDSize {
		if named, ok := p.prices.Lookup([ScheduleIDSize]byte(op.ScheduleID)); ok && named.Server == p.self {
			s = named
		}
	}
	if s == nil {
		cur, _, err := p.prices.Current(p.now())
		if err != nil {
			return fmt.Errorf("protocol: current schedule: %w", internalOnly(err))
		}
		s = cur
	}
	if q, err := Quote(s.Rates, op.Usage); err != nil || q > rec.Value {
		return creditError(&Error{Code: pb.Code_INSUFFICIENT_PAYMENT,
			Message: fmt.Sprintf("the call now costs more than the %d recorded for it", rec.Value)})
	}
	return nil
}

// run serves a request whose coins are recorded and stores its answer,
// or, for a Replay operation, counts it.
func (p *Paywall) run(ctx context.Context, id [RequestIDSize]byte, digest [DigestSize]byte, op *Operation) ([]byte, error) {
	body, err := op.Serve(ctx)
	if err != nil {
		return nil, creditError(err)
	}
	if op.Replay {
		p.countServed(id)
	} else {
		// Best effort: without the answer, a retry is served again on
		// credit, which is still never charged twice.
		_ = p.spent.Answer(ctx, id, digest, body)
	}
	return body, nil
}

// servedCount returns how many times the Replay operation of request id
// was answered, as far as the paywall remembers.
func (p *Paywall) servedCount(id [RequestIDSize]byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.served.get(id, time.Now())
}

// countServed counts one more answer of the Replay operation of request
// id.
func (p *Paywall) countServed(id [RequestIDSize]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.served.add(id, time.Now(), p.replayFor)
}

// maxReplayTracked bounds the requests a [Paywall] counts the answers
// of; beyond it, the oldest are forgotten.
const maxReplayTracked = 1 << 16

// replayTable counts the answers of Replay operations per request, for a
// while after the first: a map, and a queue of its keys in the order
// they were added, which is also the order in which they expire.
type replayTable struct {
	n     map[[RequestIDSize]byte]replayCount
	queue []replayEntry
	head  int
}

type replayCount struct {
	served int
	until  time.Time
}

type replayEntry struct {
	id    [RequestIDSize]byte
	until time.Time
}

func (t *replayTable) get(id [RequestIDSize]byte, now time.Time) int {
	c, ok := t.n[id]
	if !ok || !now.Before(c.until) {
		return 0
	}
	return c.served
}

func (t *replayTable) add(id [RequestIDSize]byte, now time.Time, keep time.Duration) {
	if c, ok := t.n[id]; ok && now.Before(c.until) {
		c.served++
		t.n[id] = c
		return
	}
	// Forget what has expired, and the oldest beyond the bound.
	for t.head < len(t.queue) {
		e := t.queue[t.head]
		if now.Before(e.until) && len(t.n) < maxReplayTracked {
			break
		}
		if c, ok := t.n[e.id]; ok && c.until.Equal(e.until) {
			delete(t.n, e.id)
		}
		t.queue[t.head] = replayEntry{}
		t.head++
	}
	if t.head > len(t.queue)/2 {
		t.queue = append(t.queue[:0], t.queue[t.head:]...)
		t.head = 0
	}
	until := now.Add(keep)
	t.n[id] = replayCount{served: 1, until: until}
	t.queue = append(t.queue, replayEntry{id: id, until: until})
}

// creditError turns the failure of a paid operation whose coins are
// recorded into an INTERNAL answer. Every other code promises the caller
// that its coins were not recorded (see [OutcomeOf]); the code the
// operation failed with is kept in the message.
func creditError(err error) error {
	code := CodeOf(err)
	msg := code.String()
	if e, ok := errors.AsType[*Error](err); ok && e.Message != "" {
		msg += ": " + e.Message
	}
	return &Error{Code: pb.Code_INTERNAL, Message: msg + " (after payment: the coins are credit for a retry of this request)"}
}

// internalOnly keeps err's chain for the server's logs but makes sure it is
// answered as INTERNAL, whatever sentinel a store wrapped in it.
func internalOnly(err error) error {
	return &wrappedInternal{err}
}

type wrappedInternal struct{ err error }

func (w *wrappedInternal) Error() string { return w.err.Error() }
func (w *wrappedInternal) Unwrap() error { return &Error{Code: pb.Code_INTERNAL} }

// hold waits until no other attempt of request id is in progress and
// marks one as in progress; release ends it.
func (p *Paywall) hold(ctx context.Context, id [RequestIDSize]byte) (release func(), err error) {
	for {
		p.mu.Lock()
		busy, ok := p.flights[id]
		if !ok {
			done := make(chan struct{})
			p.flights[id] = done
			p.mu.Unlock()
			return func() {
				p.mu.Lock()
				delete(p.flights, id)
				p.mu.Unlock()
				close(done)
			}, nil
		}
		p.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// price finds the schedule the operation is paid under and its quote. If
// the body names no schedule, or one that is unknown or not valid now, it
// returns PAYMENT_REQUIRED with the current schedule, unless the call is
// free under it (then it returns that schedule and a zero quote).
func (p *Paywall) price(op *Operation, now time.Time) (*SignedSchedule, uint64, error) {
	why := "no price schedule named"
	if len(op.ScheduleID) == ScheduleIDSize {
		if s, ok := p.prices.Lookup([ScheduleIDSize]byte(op.ScheduleID)); ok && s.Server == p.self && s.Check(now) == nil {
			q, err := Quote(s.Rates, op.Usage)
			if err != nil {
				return nil, 0, badRequest("the call cannot be priced: the price overflows")
			}
			return s, q, nil
		}
		why = "price schedule unknown or expired"
	}
	cur, msg, err := p.prices.Current(now)
	if err != nil {
		return nil, 0, fmt.Errorf("protocol: current schedule: %w", internalOnly(err))
	}
	q, err := Quote(cur.Rates, op.Usage)
	if err != nil {
		return nil, 0, badRequest("the call cannot be priced: the price overflows")
	}
	if q == 0 {
		return cur, 0, nil
	}
	return nil, 0, p.askPayment(pb.Code_PAYMENT_REQUIRED, cur, q, msg, why)
}

// askPayment returns a PAYMENT_REQUIRED or INSUFFICIENT_PAYMENT answer.
func (p *Paywall) askPayment(code pb.Code, s *SignedSchedule, quote uint64, agentMsg, why string) error {
	if agentMsg == "" && code == pb.Code_INSUFFICIENT_PAYMENT {
		if cur, msg, err := p.prices.Current(p.now()); err == nil && cur.ID() == s.ID() {
			agentMsg = msg
		}
	}
	return &Error{Code: code, Message: why, Payment: &PaymentRequired{Schedule: s, Quote: quote, Message: agentMsg}}
}

// parseSpends decodes the spends of a call and applies every check that
// needs no signature: distinct coins, keysets known, not revoked, in the
// schedule's unit and inside their spend window, and designations. It
// returns the spends, their total and the bearer ones.
func (p *Paywall) parseSpends(ctx context.Context, raw [][]byte, s *SignedSchedule, now time.Time) (spends, bearer []*coin.Spend, total uint64, err error) {
	spends = make([]*coin.Spend, len(raw))
	seen := make(map[[32]byte]bool, len(raw))
	for i, b := range raw {
		sp, err := coin.ParseSpend(b)
		if err != nil {
			return nil, nil, 0, spendErr(i, "does not verify", pb.Code_INVALID_COIN)
		}
		if seen[sp.Pub] {
			return nil, nil, 0, badRequest(fmt.Sprintf("spend %d: the same coin twice", i))
		}
		seen[sp.Pub] = true
		ks, err := p.keysets.Lookup(sp.KeysetID)
		if err == nil && ks == nil {
			err = coin.ErrUnknownKeyset
		}
		if errors.Is(err, coin.ErrUnknownKeyset) && p.keysetMiss != nil && p.keysetMiss(ctx, sp.KeysetID) {
			if ks, err = p.keysets.Lookup(sp.KeysetID); err == nil && ks == nil {
				err = coin.ErrUnknownKeyset
			}
		}
		if err != nil {
			return nil, nil, 0, spendError(&coin.BatchError{Errs: indexed(i, err)})
		}
		switch {
		case ks.Unit != s.Unit:
			return nil, nil, 0, spendErr(i, "keyset unit "+ks.Unit+", schedule unit "+s.Unit, pb.Code_INVALID_COIN)
		case !ks.Open(coin.WindowSpend, now):
			return nil, nil, 0, spendErr(i, "keyset outside its spend window", pb.Code_EXPIRED_KEYSET)
		case sp.Designated != ([32]byte{}) && sp.Designated != p.designation:
			return nil, nil, 0, spendErr(i, "coin designated to another server", pb.Code_INVALID_COIN)
		case sp.Designated == ([32]byte{}):
			bearer = append(bearer, sp)
		}
		var carry uint64
		total, carry = bits.Add64(total, sp.Amount, 0)
		if carry != 0 {
			return nil, nil, 0, badRequest("the spends' total overflows")
		}
		spends[i] = sp
	}
	return spends, bearer, total, nil
}

func indexed(i int, err error) []error {
	errs := make([]error, i+1)
	errs[i] = err
	return errs
}

// spendError turns a verification failure into its answer: the code of the
// first failed spend, and a message that tells designation and keyset
// problems apart but says nothing more of a spend that does not verify.
func spendError(err error) error {
	var be *coin.BatchError
	if !errors.As(err, &be) {
		return err // rate limited, or the context ended
	}
	for i, e := range be.Errs {
		if e == nil {
			continue
		}
		code := CodeOf(e)
		switch {
		case code == pb.Code_REVOKED_KEYSET:
			return spendErr(i, "keyset revoked", code)
		case code == pb.Code_UNKNOWN_KEYSET:
			return spendErr(i, "unknown keyset", code)
		case code == pb.Code_EXPIRED_KEYSET:
			return spendErr(i, "keyset outside its spend window", code)
		case errors.Is(e, coin.ErrDesignated):
			return spendErr(i, "coin designated to another server", pb.Code_INVALID_COIN)
		case code == pb.Code_INVALID_COIN:
			return spendErr(i, "does not verify", code)
		}
		return fmt.Errorf("protocol: verifying spend %d: %w", i, internalOnly(e))
	}
	return nil
}

func spendErr(i int, msg string, code pb.Code) error {
	return &Error{Code: code, Message: fmt.Sprintf("spend %d: %s", i, msg)}
}

func badRequest(msg string) error {
	return &Error{Code: pb.Code_BAD_REQUEST, Message: msg}
}
