package protocol

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// Defaults of [NewBatchVerifier].
const (
	// DefaultMaxBatch bounds the spends of one shared batch.
	DefaultMaxBatch = 64
	// DefaultBatchWindow bounds how long a slot waits for more calls
	// before it verifies what is queued, and DefaultBatchTarget is the
	// number of queued spends at which it stops waiting.
	DefaultBatchWindow = 2 * time.Millisecond
	DefaultBatchTarget = 16
	// batchCoolOff is how long slots do not wait for company after
	// batchVain waits in a row brought nobody.
	batchCoolOff = 100 * time.Millisecond
	batchVain    = 3
	// DefaultQuarantine is how long a peer whose spends failed is kept out
	// of shared batches the first time; each new offence within twice the
	// last period doubles it, up to [DefaultMaxQuarantine].
	DefaultQuarantine = 10 * time.Second
	// DefaultMaxQuarantine bounds a quarantine.
	DefaultMaxQuarantine = 10 * time.Minute
	// DefaultQuarantineInterval is the least time between two
	// verifications for one quarantined peer.
	DefaultQuarantineInterval = 100 * time.Millisecond
	// DefaultQuarantineWait bounds how long a quarantined peer's call
	// waits for its turn before it is answered RATE_LIMITED.
	DefaultQuarantineWait = time.Second
)

// maxQuarantined bounds the quarantine table; beyond it, expired entries
// are swept.
const maxQuarantined = 4096

// Peers with a good call: maxProven bounds the table, and an entry is
// forgotten provenFor after the peer's last good call (or at random, when
// the table is full of recent ones). A peer forgotten is verified apart
// again until its next good call.
const (
	maxProven = 1 << 16
	provenFor = time.Hour
)

// BatchVerifier verifies the spends of concurrent calls together, with one
// [coin.Verifier.VerifyBatch] per batch: a spend costs about half as much
// in a batch of eight or more as alone. Calls queue; a call that finds a
// verification slot free takes it and verifies what is queued (up to the
// batch size), and calls that arrive while every slot is busy wait for
// the next batch. Before it verifies, a slot may wait a little for company
// (see [WithBatchWindow]): for calls announced with
// [BatchVerifier.Announce] that are on their way, and, under load, for
// calls expected from the recent rate of arrivals. A lone caller is
// verified at once.
//
// Only peers that have had a call verified (a good call: all its spends
// passed) join shared batches. The calls of a peer that has not, such as
// a fresh libp2p identity, are verified apart from everyone else's,
// together with that peer's own other calls only: a forger that makes a
// new identity for each call fails nobody's batch but its own. A
// forger must first pay for one good call with real coins to share a
// batch with others, and then fails at most one before it is
// quarantined.
//
// If a shared batch fails, VerifyBatch checks its spends one by one; each
// call gets the results of its own spends, and every peer whose spends
// failed a signature or key check is quarantined: for a while its calls
// are verified alone, outside shared batches, one at a time and at most
// one per interval, so that a peer sending bad spends cannot push honest
// callers onto single checks, nor take more than a sliver of the CPU. A
// quarantined peer's call that cannot get its turn within the wait is
// answered RATE_LIMITED. A quarantined peer must make a good call again
// before it rejoins shared batches.
//
// Quarantine and rate limits run on the real (monotonic) clock; the clock
// option sets only the time at which keyset windows are checked.
type BatchVerifier struct {
	v         coin.Verifier
	now       func() time.Time
	maxBatch  int
	slots     int
	qBase     time.Duration
	qMax      time.Duration
	qInterval time.Duration
	qWait     time.Duration

	window time.Duration
	target int

	mu       sync.Mutex
	pending  []*verifyJob
	items    int           // spends in pending
	incoming int           // announced calls not yet queued or cancelled
	lastIn   time.Time     // when the last call was queued
	meanGap  time.Duration // moving mean of the time between calls queued
	coolOff  time.Time     // no waiting for company before this time
	vain     int           // waits for company in a row that brought nobody
	overlap  float64       // moving mean of arrivals that found calls queued or in verification
	arrived  chan struct{} // closed and replaced when a call is queued or cancelled
	active   int
	quar     map[peer.ID]*quarantine
	proven   map[peer.ID]time.Time // peers with a good call, and when their last one was

	stats batchCounters
}

// verifyJob is one call's spends, queued or being verified. done and lead
// are guarded by the verifier's mutex; wake tells the waiting goroutine
// to look at them.
type verifyJob struct {
	items []coin.Item
	peer  peer.ID
	errs  []error // per item; nil if all passed
	done  bool
	lead  bool // the goroutine of this job must take over a slot
	wake  chan struct{}
}

type quarantine struct {
	until  time.Time // quarantined before this time
	period time.Duration
	next   time.Time // no verification before this time
	busy   bool
}

type batchCounters struct {
	batches, items, shared, failed, alone, limited, offences, unproven atomic.Int64
}

// BatchStats are counters of a [BatchVerifier] since it was made.
type BatchStats struct {
	// Batches is the number of VerifyBatch runs over shared batches, and
	// Items the spends they held: Items/Batches is the mean batch size.
	Batches, Items int64
	// Shared counts batches of more than one call of peers with a good
	// call (the calls of a new peer batched together are not counted).
	Shared int64
	// Failed counts shared batches that failed and were checked spend by
	// spend.
	Failed int64
	// Alone counts calls of quarantined peers verified on their own, and
	// Limited those answered RATE_LIMITED instead.
	Alone, Limited int64
	// Offences counts calls whose spends failed a signature or key check.
	Offences int64
	// Unproven counts calls of peers without a good call yet, verified
	// apart from other peers' calls.
	Unproven int64
}

// BatchOption configures [NewBatchVerifier].
type BatchOption func(*BatchVerifier)

// WithBatchClock sets the clock at which keyset windows are checked.
func WithBatchClock(now func() time.Time) BatchOption {
	return func(b *BatchVerifier) { b.now = now }
}

// WithMaxBatch bounds the spends of one shared batch (at least 1). A
// single call with more spends is verified in a batch of its own.
func WithMaxBatch(n int) BatchOption {
	return func(b *BatchVerifier) { b.maxBatch = max(n, 1) }
}

// WithBatchWindow sets how long a slot waits, before it verifies what is
// queued, for calls announced with [BatchVerifier.Announce] that have not
// reached it yet, and the number of queued spends at which it stops
// waiting. A zero window never waits.
func WithBatchWindow(window time.Duration, target int) BatchOption {
	return func(b *BatchVerifier) { b.window, b.target = window, target }
}

// WithVerifySlots sets how many batches may be verified at once (at
// least 1).
func WithVerifySlots(n int) BatchOption {
	return func(b *BatchVerifier) { b.slots = max(n, 1) }
}

// WithQuarantine sets the first quarantine period of an offending peer and
// the longest one.
func WithQuarantine(first, longest time.Duration) BatchOption {
	return func(b *BatchVerifier) { b.qBase, b.qMax = first, max(first, longest) }
}

// WithQuarantineRate sets the least interval between two verifications for
// one quarantined peer, and how long its call may wait for its turn.
func WithQuarantineRate(interval, wait time.Duration) BatchOption {
	return func(b *BatchVerifier) { b.qInterval, b.qWait = interval, wait }
}

// NewBatchVerifier returns a verifier that checks spends with v (a copy is
// kept; v.Window should be [coin.WindowSpend] at a server).
//
// Defaults: clock time.Now; batches of at most [DefaultMaxBatch] spends;
// a window of [DefaultBatchWindow] and a target of [DefaultBatchTarget]
// spends; runtime.GOMAXPROCS(0) slots; quarantine from [DefaultQuarantine] up to
// [DefaultMaxQuarantine]; a quarantined peer verified at most once per
// [DefaultQuarantineInterval], waiting at most [DefaultQuarantineWait].
func NewBatchVerifier(v *coin.Verifier, opts ...BatchOption) *BatchVerifier {
	b := &BatchVerifier{
		v:         *v,
		now:       time.Now,
		maxBatch:  DefaultMaxBatch,
		slots:     runtime.GOMAXPROCS(0),
		qBase:     DefaultQuarantine,
		qMax:      DefaultMaxQuarantine,
		qInterval: DefaultQuarantineInterval,
		qWait:     DefaultQuarantineWait,
		window:    DefaultBatchWindow,
		target:    DefaultBatchTarget,
		arrived:   make(chan struct{}),
		quar:      make(map[peer.ID]*quarantine),
		proven:    make(map[peer.ID]time.Time),
	}
	for _, o := range opts {
		o(b)
	}
	b.meanGap = 2 * b.window
	return b
}

// Stats returns the verifier's counters.
func (b *BatchVerifier) Stats() BatchStats {
	return BatchStats{
		Batches:  b.stats.batches.Load(),
		Items:    b.stats.items.Load(),
		Shared:   b.stats.shared.Load(),
		Failed:   b.stats.failed.Load(),
		Alone:    b.stats.alone.Load(),
		Limited:  b.stats.limited.Load(),
		Offences: b.stats.offences.Load(),
		Unproven: b.stats.unproven.Load(),
	}
}

// Quarantined reports whether from is quarantined now.
func (b *BatchVerifier) Quarantined(from peer.ID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.quar[from]
	return q != nil && time.Now().Before(q.until)
}

// Announced is a call announced to a [BatchVerifier]: its spends will
// reach [BatchVerifier.VerifyAnnounced] soon, unless it is cancelled.
type Announced struct {
	b    *BatchVerifier
	done bool // guarded by b.mu
}

// Announce tells the verifier that a call with spends has arrived and is
// on its way to verification, so that a batch being formed may wait for
// it (see [WithBatchWindow]). The caller must pass the result to
// [BatchVerifier.VerifyAnnounced] or call its Cancel method; a lone caller
// that announces its own call makes no batch wait.
func (b *BatchVerifier) Announce() *Announced {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.incoming++
	return &Announced{b: b}
}

// AnnounceFrom is [BatchVerifier.Announce] for a call from peer from. A
// call that will not join a shared batch (its peer has had no good call,
// or is quarantined) is not announced, so that no batch waits for it.
func (b *BatchVerifier) AnnounceFrom(from peer.ID) *Announced {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if q := b.quar[from]; !b.isProven(from, now) || q != nil && now.Before(q.until) {
		return &Announced{b: b, done: true}
	}
	b.incoming++
	return &Announced{b: b}
}

// Cancel withdraws the announcement, if it still stands. It may be called
// more than once.
func (a *Announced) Cancel() {
	if a == nil {
		return
	}
	a.b.mu.Lock()
	defer a.b.mu.Unlock()
	a.arrive()
}

// arrive ends the announcement. b.mu must be held.
func (a *Announced) arrive() {
	if a == nil || a.done {
		return
	}
	a.done = true
	a.b.incoming--
	a.b.wakeGatherers()
}

// wakeGatherers wakes slots waiting for announced calls. b.mu must be held.
func (b *BatchVerifier) wakeGatherers() {
	close(b.arrived)
	b.arrived = make(chan struct{})
}

// Verify checks the spends of one call from peer from. It returns nil if
// all pass, a *[coin.BatchError] naming the failed ones, an *[Error] with
// code RATE_LIMITED for a quarantined peer that must wait, or ctx's error.
// Once a call's spends are in a batch, Verify waits for the batch's
// result even if ctx ends: a batch takes milliseconds.
func (b *BatchVerifier) Verify(ctx context.Context, from peer.ID, items []coin.Item) error {
	return b.VerifyAnnounced(ctx, from, items, nil)
}

// VerifyAnnounced is [BatchVerifier.Verify] for a call announced as a (nil
// for none).
func (b *BatchVerifier) VerifyAnnounced(ctx context.Context, from peer.ID, items []coin.Item, a *Announced) error {
	if len(items) == 0 || b.Quarantined(from) {
		a.Cancel()
		if len(items) == 0 {
			return nil
		}
		return b.verifyAlone(ctx, from, items)
	}
	j := &verifyJob{items: items, peer: from, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.arrival(time.Now())
	b.pending = append(b.pending, j)
	b.items += len(items)
	if a != nil && !a.done {
		a.arrive() // wakes the gatherers
	} else {
		b.wakeGatherers()
	}
	if b.active < b.slots {
		b.active++
		b.mu.Unlock()
		b.lead(j)
	} else {
		b.mu.Unlock()
		b.wait(j)
	}
	return jobErr(j)
}

func jobErr(j *verifyJob) error {
	if j.errs == nil {
		return nil
	}
	return &coin.BatchError{Errs: j.errs}
}

// wait blocks until j is done, taking over a slot if asked to.
func (b *BatchVerifier) wait(j *verifyJob) {
	for {
		<-j.wake
		b.mu.Lock()
		lead, done := j.lead, j.done
		j.lead = false
		b.mu.Unlock()
		if lead {
			b.lead(j)
			return
		}
		if done {
			return
		}
	}
}

// lead holds a slot: it verifies queued batches until own is done, then
// hands the slot to a waiting job, or gives it up if none waits.
func (b *BatchVerifier) lead(own *verifyJob) {
	for {
		b.mu.Lock()
		if own.done {
			b.handOff()
			b.mu.Unlock()
			return
		}
		if len(b.pending) == 0 {
			// Another slot took own into its batch.
			b.active--
			b.mu.Unlock()
			b.wait(own)
			return
		}
		if !b.isProven(b.pending[0].peer, time.Now()) || b.gather() {
			batch, apart := b.take()
			b.mu.Unlock()
			b.run(batch, apart)
			continue
		}
		b.mu.Unlock()
	}
}

// gather decides whether a slot waits before it verifies the queue, and
// waits. It waits, within the batch window and until the queue holds the
// target number of spends, while an announced call is on its way, or
// while calls have been arriving often enough that another is expected
// soon (within three times the mean gap between arrivals). A few such
// waits in a row that bring nobody at all turn expecting off for a while.
// Calls are expected only while most arrivals find other calls queued or
// being verified: a lone caller, whose next call cannot come before this
// one is answered, never waits.
//
// It reports whether the caller should verify the queue now; if not (the
// queue was taken meanwhile), the caller looks at its own job again. b.mu
// must be held; gather releases it while it waits.
func (b *BatchVerifier) gather() bool {
	if b.window <= 0 {
		return true
	}
	start := time.Now()
	deadline := start.Add(b.window)
	before := b.items
	for b.items < b.target {
		now := time.Now()
		wait := deadline.Sub(now)
		if b.incoming == 0 {
			if now.Before(b.coolOff) || b.overlap < 0.5 || 3*b.meanGap >= b.window {
				break
			}
			wait = min(wait, 3*b.meanGap)
		}
		if wait <= 0 {
			break
		}
		arrived := b.arrived
		b.mu.Unlock()
		t := time.NewTimer(wait)
		timedOut := false
		select {
		case <-arrived:
			t.Stop()
		case <-t.C:
			timedOut = true
		}
		b.mu.Lock()
		if len(b.pending) == 0 {
			return false
		}
		if timedOut && b.incoming == 0 {
			if b.items != before {
				b.vain = 0
			} else if b.vain++; b.vain >= batchVain {
				b.vain = 0
				b.coolOff = time.Now().Add(batchCoolOff)
			}
			break
		}
	}
	return true
}

// arrival updates the moving means of the gap between arrivals (a gap
// counts at most twice the batch window) and of arrivals that find other
// calls queued or in verification. It is called before the new call is
// queued. b.mu must be held.
func (b *BatchVerifier) arrival(now time.Time) {
	gap := min(now.Sub(b.lastIn), 2*b.window)
	b.lastIn = now
	b.meanGap += (gap - b.meanGap) / 8
	busy := 0.0
	if len(b.pending) > 0 || b.active > 0 {
		busy = 1
	}
	b.overlap += (busy - b.overlap) / 8
}

// handOff passes the caller's slot to the first queued job not already
// asked to lead, or frees it. b.mu must be held.
func (b *BatchVerifier) handOff() {
	for _, j := range b.pending {
		if !j.lead {
			j.lead = true
			signal(j)
			return
		}
	}
	b.active--
}

func signal(j *verifyJob) {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

// take removes the next batch from the queue. If the first job queued is
// of a peer without a good call, the batch is that job and the other jobs
// of the same peer (apart is then true); otherwise it is the first job and
// the next jobs of peers with a good call. Either way it holds up to
// maxBatch spends (at least one job). Jobs left keep their order. b.mu
// must be held.
func (b *BatchVerifier) take() (batch []*verifyJob, apart bool) {
	now := time.Now()
	first := b.pending[0]
	apart = !b.isProven(first.peer, now)
	rest := b.pending[:0]
	total := 0
	for i, j := range b.pending {
		k := len(j.items)
		mine := apart && j.peer == first.peer || !apart && b.isProven(j.peer, now)
		fits := i == 0 || (total+k <= b.maxBatch && mine)
		if fits {
			batch = append(batch, j)
			total += k
		} else {
			rest = append(rest, j)
		}
	}
	clear(b.pending[len(rest):])
	b.pending = rest
	b.items -= total
	// A job asked to lead but taken here still wakes up to lead; it then
	// finds itself done and passes the slot on.
	return batch, apart
}

// isProven reports whether p has had a good call lately. b.mu must be
// held.
func (b *BatchVerifier) isProven(p peer.ID, now time.Time) bool {
	t, ok := b.proven[p]
	return ok && now.Sub(t) < provenFor
}

// prove records a good call of p. b.mu must be held.
func (b *BatchVerifier) prove(p peer.ID, now time.Time) {
	if _, ok := b.proven[p]; !ok && len(b.proven) >= maxProven {
		for q, t := range b.proven {
			if now.Sub(t) >= provenFor {
				delete(b.proven, q)
			}
		}
		for q := range b.proven { // random order
			if len(b.proven) < maxProven*3/4 {
				break
			}
			delete(b.proven, q)
		}
	}
	b.proven[p] = now
}

// run verifies a batch and hands each job its results. apart marks a
// batch of one peer without a good call.
func (b *BatchVerifier) run(batch []*verifyJob, apart bool) {
	var items []coin.Item
	if len(batch) == 1 {
		items = batch[0].items
	} else {
		for _, j := range batch {
			items = append(items, j.items...)
		}
	}
	shared := len(batch) > 1 && !apart
	if shared {
		b.stats.shared.Add(1)
	}
	if apart {
		b.stats.unproven.Add(int64(len(batch)))
	}
	b.stats.batches.Add(1)
	b.stats.items.Add(int64(len(items)))
	err := b.v.VerifyBatch(items, b.now())
	var errs []error
	var be *coin.BatchError
	if errors.As(err, &be) {
		errs = be.Errs
		if shared {
			b.stats.failed.Add(1)
		}
	}
	now := time.Now()
	b.mu.Lock()
	off := 0
	for _, j := range batch {
		if errs != nil {
			mine := errs[off : off+len(j.items)]
			for _, e := range mine {
				if e != nil {
					j.errs = mine
					break
				}
			}
		}
		switch {
		case offence(j.errs):
			b.offend(j.peer, now)
		case j.errs == nil:
			b.prove(j.peer, now)
		}
		off += len(j.items)
		j.done = true
		signal(j)
	}
	b.mu.Unlock()
}

// offence reports whether errs hold a failure that makes a shared batch
// fail: a bad signature or key. (Keyset, window and designation failures
// are found before the batch equation and cost the others nothing.)
func offence(errs []error) bool {
	for _, e := range errs {
		if e != nil && (errors.Is(e, coin.ErrBadSignature) || errors.Is(e, coin.ErrBadKey) || errors.Is(e, coin.ErrMalformed)) {
			return true
		}
	}
	return false
}

// offend quarantines p. b.mu must be held.
func (b *BatchVerifier) offend(p peer.ID, now time.Time) {
	b.stats.offences.Add(1)
	delete(b.proven, p)
	q := b.quar[p]
	if q == nil {
		if len(b.quar) >= maxQuarantined {
			b.sweep(now)
		}
		q = &quarantine{}
		b.quar[p] = q
	}
	if q.period > 0 && now.Before(q.until.Add(2*q.period)) {
		q.period = min(2*q.period, b.qMax)
	} else {
		q.period = b.qBase
	}
	q.until = now.Add(q.period)
}

// sweep forgets quarantines that ended long enough ago that they would
// not double. b.mu must be held.
func (b *BatchVerifier) sweep(now time.Time) {
	for p, q := range b.quar {
		if !q.busy && !now.Before(q.until.Add(2*q.period)) {
			delete(b.quar, p)
		}
	}
}

// verifyAlone verifies a quarantined peer's call on its own, when the
// peer's turn comes.
func (b *BatchVerifier) verifyAlone(ctx context.Context, from peer.ID, items []coin.Item) error {
	deadline := time.Now().Add(b.qWait)
	b.mu.Lock()
	for {
		q := b.quar[from]
		if q == nil {
			q = &quarantine{}
			b.quar[from] = q
		}
		now := time.Now()
		if !q.busy && !now.Before(q.next) {
			q.busy = true
			break
		}
		wait := b.qInterval
		if !q.busy {
			wait = q.next.Sub(now)
		}
		if now.Add(wait).After(deadline) {
			b.mu.Unlock()
			b.stats.limited.Add(1)
			return &Error{Code: pb.Code_RATE_LIMITED, Message: "spends from this peer failed verification; retry later"}
		}
		b.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		b.mu.Lock()
	}
	b.mu.Unlock()

	b.stats.alone.Add(1)
	err := b.v.VerifyBatch(items, b.now())
	var errs []error
	var be *coin.BatchError
	if errors.As(err, &be) {
		errs = be.Errs
	}
	now := time.Now()
	b.mu.Lock()
	q := b.quar[from]
	q.busy = false
	q.next = now.Add(b.qInterval)
	switch {
	case offence(errs):
		b.offend(from, now)
	case err == nil && !now.Before(q.until):
		b.prove(from, now) // a good call once the quarantine is over
	}
	b.mu.Unlock()
	return err
}
