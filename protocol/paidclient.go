package protocol

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// Paid calls, the client's side. A [PaidClient] pays up front under the
// server's schedule it knows; if the server answers PAYMENT_REQUIRED (the
// schedule expired, or the client knew none) or INSUFFICIENT_PAYMENT, it
// hands the server's offer to a [PaymentPolicy], and pays again or gives
// up. Coins come from a [Payer], the wallet, which is told how each
// payment ended.

// Outcome is what became of the coins of one paid attempt, as far as the
// client can tell from the answer.
type Outcome int

const (
	// OutcomeSpent: the server answered with success; it took the coins.
	OutcomeSpent Outcome = iota + 1
	// OutcomeRefused: the server answered with an error other than
	// INTERNAL, which it sends only when it recorded none of the coins.
	// They are unspent, but a server has seen them: spend them again only
	// at this server, or swap them at the mint.
	OutcomeRefused
	// OutcomeUnknown: no answer, or INTERNAL; the server may hold the coins
	// as credit for this request. Retrying the same request (same body,
	// same spends) uses the credit; after a timeout the wallet refreshes
	// the coins by a swap.
	OutcomeUnknown
)

// String returns "spent", "refused" or "unknown".
func (o Outcome) String() string {
	switch o {
	case OutcomeSpent:
		return "spent"
	case OutcomeRefused:
		return "refused"
	case OutcomeUnknown:
		return "unknown"
	}
	return "invalid"
}

// OutcomeOf returns the outcome of a paid attempt that ended with err, as
// returned by [Call]: nil is [OutcomeSpent], an *[Error] other than
// INTERNAL is [OutcomeRefused], anything else [OutcomeUnknown].
func OutcomeOf(err error) Outcome {
	if err == nil {
		return OutcomeSpent
	}
	if e, ok := errors.AsType[*Error](err); ok && e.Code != pb.Code_INTERNAL && e.Code != pb.Code_OK {
		return OutcomeRefused
	}
	return OutcomeUnknown
}

// Payer pays for calls; a wallet implements it.
type Payer interface {
	// Pay returns spends of coins worth exactly amount units of unit in
	// all, each signed for server and the request digest. The wallet
	// marks the coins reserved for (server, requestID) before it returns
	// them. An error fails the call; the client returns it.
	Pay(ctx context.Context, server peer.ID, requestID []byte, unit string, amount uint64, digest [DigestSize]byte) ([]*coin.Spend, error)
	// Settle tells the wallet how the attempt of request requestID, paid
	// with spends, ended. ctx is not cancelled when the call's was.
	Settle(ctx context.Context, server peer.ID, requestID []byte, spends []*coin.Spend, outcome Outcome)
}

// Offer is what a server asks to be paid for a call it refused with
// PAYMENT_REQUIRED or INSUFFICIENT_PAYMENT.
type Offer struct {
	// Server is the server called.
	Server peer.ID
	// Schedule is the server's current schedule, verified as signed by
	// Server.
	Schedule *SignedSchedule
	// Quote is the server's price for the call under Schedule.
	Quote uint64
	// Computed is the price this client computes for the call under
	// Schedule. It differs from Quote only when the server knows more of
	// the call's usage (AddLease: the size of the shares it holds).
	Computed uint64
	// Message is the server's pricing agent's message; untrusted text.
	Message string
	// Reason is the refusal.
	Reason *Error
}

// PaymentPolicy decides whether to pay what a server asks for a call: nil
// pays Offer.Quote under Offer.Schedule; an error gives up, and the call
// returns it.
type PaymentPolicy func(ctx context.Context, o *Offer) error

// PayComputed is the default [PaymentPolicy]: it pays when the server's
// quote is at most what the client computes for the call under the
// offered schedule, whatever the schedule's rates. A client that cares
// about price supplies its own policy.
func PayComputed(ctx context.Context, o *Offer) error {
	if o.Quote <= o.Computed {
		return nil
	}
	return fmt.Errorf("%w: the server asks %d, the call costs %d under its schedule: %w", ErrGaveUp, o.Quote, o.Computed, o.Reason)
}

// Defaults of [NewPaidClient].
const (
	// DefaultPaymentRounds bounds the offers one call may pay after.
	DefaultPaymentRounds = 3
	// DefaultRetries bounds the times one request is sent again,
	// unchanged, when its outcome is unknown: after a transport failure,
	// or an INTERNAL answer to a request that carries spends.
	DefaultRetries = 2
	// DefaultRetryBackoff is the wait before the first retry; each next
	// one waits twice as long.
	DefaultRetryBackoff = 25 * time.Millisecond
)

// PaidClient makes calls, free and paid, to scrip servers over one libp2p
// host. It caches each server's schedule, as learnt from PAYMENT_REQUIRED
// answers or set with [PaidClient.SetSchedule]. It is safe for concurrent
// use.
type PaidClient struct {
	host    host.Host
	payer   Payer
	policy  PaymentPolicy
	now     func() time.Time
	upfront bool
	rounds  int
	retries int
	backoff time.Duration

	mu    sync.Mutex
	sched map[peer.ID]*SignedSchedule
}

// ClientOption configures [NewPaidClient].
type ClientOption func(*PaidClient)

// WithClientClock sets the clock against which cached schedules are
// checked.
func WithClientClock(now func() time.Time) ClientOption {
	return func(c *PaidClient) { c.now = now }
}

// WithPaymentPolicy sets the policy that decides on offers.
func WithPaymentPolicy(p PaymentPolicy) ClientOption {
	return func(c *PaidClient) { c.policy = p }
}

// WithUpfront sets whether the client pays up front under a cached
// schedule (true), or always sends a paid call unpaid first and pays what
// the server then asks (false: one more round trip per call).
func WithUpfront(on bool) ClientOption {
	return func(c *PaidClient) { c.upfront = on }
}

// WithPaymentRounds bounds the offers one call may pay after (at least 1).
func WithPaymentRounds(n int) ClientOption {
	return func(c *PaidClient) { c.rounds = max(n, 1) }
}

// WithRetries bounds how often a request is sent again, unchanged, when
// its outcome is unknown (at least 0): after a transport failure, or after
// an INTERNAL answer to a request that carries spends, which the server
// may hold as credit for that request (see [OutcomeUnknown]). The same
// request ID, body and spends go to the same server, so a server that
// recorded the coins serves the retry on their credit and never charges
// twice.
func WithRetries(n int) ClientOption {
	return func(c *PaidClient) { c.retries = max(n, 0) }
}

// WithRetryBackoff sets the wait before the first retry (at least a
// millisecond); each next retry waits twice as long as the one before.
// With n retries, a server has about (2^n − 1) × d to come back.
func WithRetryBackoff(d time.Duration) ClientOption {
	return func(c *PaidClient) { c.backoff = max(d, time.Millisecond) }
}

// NewPaidClient returns a client that calls from h and pays with payer
// (nil for a client that makes only free calls).
//
// Defaults: clock time.Now; policy [PayComputed]; up front on;
// [DefaultPaymentRounds] offers per call; [DefaultRetries] retries after
// [DefaultRetryBackoff], doubling.
func NewPaidClient(h host.Host, payer Payer, opts ...ClientOption) *PaidClient {
	c := &PaidClient{
		host:    h,
		payer:   payer,
		policy:  PayComputed,
		now:     time.Now,
		upfront: true,
		rounds:  DefaultPaymentRounds,
		retries: DefaultRetries,
		backoff: DefaultRetryBackoff,
		sched:   make(map[peer.ID]*SignedSchedule),
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Host returns the client's libp2p host.
func (c *PaidClient) Host() host.Host { return c.host }

// Schedule returns the schedule cached for server, or nil.
func (c *PaidClient) Schedule(server peer.ID) *SignedSchedule {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sched[server]
}

// SetSchedule caches s, a schedule verified as signed by its server, as
// that server's current schedule.
func (c *PaidClient) SetSchedule(s *SignedSchedule) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sched[s.Server] = s
}

// PaidRequest describes one call for [PaidClient.Do].
type PaidRequest struct {
	// Protocol is the scrip protocol ID.
	Protocol string
	// Paid marks a call that must be paid for.
	Paid bool
	// Usage is what a paid call consumes (the price is [Quote] of the
	// schedule's rates and Usage).
	Usage Usage
	// Body returns the request body for a request ID and the ID of the
	// schedule paid under (nil if none). Do calls it once per payment
	// round, with a fresh request ID each time.
	Body func(requestID, scheduleID []byte) ([]byte, error)
}

// Do makes one call to server and returns the response body. A paid call
// is paid up front if the client holds a schedule of server valid now;
// otherwise it is sent unpaid and paid after the server's offer, if the
// policy agrees. A request whose outcome is unknown (it failed in
// transport, or a paid one was answered INTERNAL) is sent again unchanged,
// a bounded number of times with a growing wait (see [WithRetries]): the
// server answers a retry without charging again. The payer is told the
// outcome once, after the last attempt; if it is still unknown, the coins
// stay reserved for that server and request.
func (c *PaidClient) Do(ctx context.Context, server peer.ID, r PaidRequest) ([]byte, error) {
	if !r.Paid {
		body, err := r.Body(newRequestID(), nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.exchange(ctx, server, r.Protocol, &pb.Request{Body: body})
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	}
	var (
		sched  *SignedSchedule
		amount uint64
	)
	if c.upfront {
		if s := c.Schedule(server); s != nil && s.Check(c.now()) == nil {
			q, err := Quote(s.Rates, r.Usage)
			if err != nil {
				return nil, err
			}
			sched, amount = s, q
		}
	}
	for round := 0; ; round++ {
		id := newRequestID()
		var sid []byte
		if sched != nil {
			s := sched.ID()
			sid = s[:]
		}
		body, err := r.Body(id, sid)
		if err != nil {
			return nil, err
		}
		req := &pb.Request{Body: body}
		digest := RequestDigest(r.Protocol, body)
		var spends []*coin.Spend
		if amount > 0 {
			if c.payer == nil {
				return nil, fmt.Errorf("%w: no payer for a paid call", ErrGaveUp)
			}
			spends, err = c.payer.Pay(ctx, server, id, sched.Unit, amount, digest)
			if err != nil {
				return nil, err
			}
			for _, s := range spends {
				req.Spends = append(req.Spends, s.Bytes())
			}
		}
		resp, err := c.exchange(ctx, server, r.Protocol, req)
		if len(spends) > 0 {
			c.payer.Settle(context.WithoutCancel(ctx), server, id, spends, OutcomeOf(err))
		}
		if err == nil {
			return resp.Body, nil
		}
		e, ok := errors.AsType[*Error](err)
		if !ok || e.Payment == nil || (e.Code != pb.Code_PAYMENT_REQUIRED && e.Code != pb.Code_INSUFFICIENT_PAYMENT) {
			return nil, err
		}
		if round >= c.rounds {
			return nil, fmt.Errorf("%w after %d payment rounds: %w", ErrGaveUp, round, err)
		}
		o := &Offer{Server: server, Schedule: e.Payment.Schedule, Quote: e.Payment.Quote, Message: e.Payment.Message, Reason: e}
		c.SetSchedule(o.Schedule)
		if o.Computed, err = Quote(o.Schedule.Rates, r.Usage); err != nil {
			return nil, err
		}
		if err := c.policy(ctx, o); err != nil {
			return nil, err
		}
		sched, amount = o.Schedule, o.Quote
	}
}

// exchange sends req, and sends it again, unchanged, while its outcome is
// unknown: after a transport failure, or an INTERNAL answer to a request
// with spends. It waits c.backoff before the first retry, twice as long
// before each next one, and gives up after c.retries retries. A retry
// dials the server even if an earlier dial failed a moment ago (libp2p's
// dial backoff would refuse at once): a server that restarts is found.
func (c *PaidClient) exchange(ctx context.Context, server peer.ID, id string, req *pb.Request) (*pb.Response, error) {
	wait := c.backoff
	for attempt := 0; ; attempt++ {
		cctx := ctx
		if attempt > 0 {
			cctx = network.WithForceDirectDial(ctx, "scrip: retry of a request whose outcome is unknown")
		}
		resp, err := Call(cctx, c.host, server, id, req)
		if err == nil || attempt >= c.retries || ctx.Err() != nil || !unknownOutcome(err, req) {
			return resp, err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		wait *= 2
	}
}

// unknownOutcome reports whether err, the failure of req, leaves its
// outcome unknown so that it is worth sending again: a transport failure,
// or an INTERNAL answer to a request that carries spends (the server may
// hold them as credit for it).
func unknownOutcome(err error, req *pb.Request) bool {
	if _, ok := errors.AsType[*Error](err); ok {
		return len(req.Spends) > 0 && OutcomeOf(err) == OutcomeUnknown
	}
	return transportFailure(err)
}

// transportFailure reports whether err is a failure to exchange frames
// rather than an answer or a local refusal.
func transportFailure(err error) bool {
	if _, ok := errors.AsType[*Error](err); ok {
		return false
	}
	return !errors.Is(err, ErrBadSchedule) && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrUnknownProtocol)
}

// newRequestID returns 16 random bytes.
func newRequestID() []byte {
	id := make([]byte, RequestIDSize)
	rand.Read(id)
	return id
}
