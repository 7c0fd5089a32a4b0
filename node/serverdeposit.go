package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/spentset"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// Deposits: a storage server's coins go to the mint in batches, and
// bearer coins are admitted only while their undeposited value stays
// under a cap.

// bearerPolicy is the server's protocol.DepositPolicy. It counts held,
// the value of the bearer coins admitted and not yet acknowledged by the
// mint: those pending in the spent set (seeded from
// spentset.Stats.PendingBearer at start) and those of calls in progress.
// Under the cap it admits bearer coins and counts them. Over it, it
// deposits the call's coins at the mint before the call is served (or, if
// refuse is set, refuses them with RATE_LIMITED) and wakes the deposit
// loop. Coins deposited first are counted too, since they stay pending in
// the spent set until the deposit loop has the mint's verdict; the loop
// releases every bearer coin it acknowledges, so held always equals the
// spent set's pending bearer value plus the calls in progress.
//
// When the mint's verdict on a deposit made before serving is unknown,
// or partial, depositFirst returns a *protocol.DepositUnsettledError: the
// paywall records the coins the mint may hold (counted here like coins
// deposited first) and answers INTERNAL. A retry of the request is then
// served on their credit once credit agrees (protocol.CreditPolicy).
//
// (protocol.BearerCap counts only the coins it admits under the cap, so a
// deposit loop that releases every bearer coin it acknowledges would
// drive its count below the truth; and spentset.WithBearerCap refuses in
// Record, after the coins are verified, with an error the paywall answers
// as INTERNAL, which tells the client its coins may be recorded.)
type bearerPolicy struct {
	limit   uint64
	refuse  bool
	deposit func(ctx context.Context, digest [protocol.DigestSize]byte, spends []*coin.Spend) error
	// credit, if set, decides whether a request recorded earlier is
	// served on its coins' credit; over is whether held is over the cap.
	credit func(ctx context.Context, rec *protocol.SpentRequest, over bool) error
	kick   func()

	mu   sync.Mutex
	held uint64
}

var (
	_ protocol.DepositPolicy = (*bearerPolicy)(nil)
	_ protocol.CreditPolicy  = (*bearerPolicy)(nil)
)

// AdmitBearer implements protocol.DepositPolicy.
func (b *bearerPolicy) AdmitBearer(ctx context.Context, digest [protocol.DigestSize]byte, spends []*coin.Spend) (func(), error) {
	var v uint64
	for _, s := range spends {
		v += s.Amount // a verified call's total does not overflow
	}
	var once sync.Once
	undo := func() { once.Do(func() { b.release(v) }) }
	b.mu.Lock()
	if sum := b.held + v; sum >= b.held && sum <= b.limit {
		b.held = sum
		b.mu.Unlock()
		return undo, nil
	}
	b.mu.Unlock()
	b.kick()
	if b.refuse || b.deposit == nil {
		return nil, &protocol.Error{Code: pb.Code_RATE_LIMITED, Message: "too much undeposited bearer value here; pay with coins designated to this server"}
	}
	err := b.deposit(ctx, digest, spends)
	if ue, ok := errors.AsType[*protocol.DepositUnsettledError](err); ok {
		// The coins the mint may hold are recorded pending: count them
		// until the deposit loop has the mint's verdict.
		kept := v - bearerValue(spends, ue.Refused)
		b.mu.Lock()
		b.held = saturatingAdd(b.held, kept)
		b.mu.Unlock()
		return func() { once.Do(func() { b.release(kept) }) }, err
	}
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.held = saturatingAdd(b.held, v)
	b.mu.Unlock()
	return undo, nil
}

// AdmitCredit implements protocol.CreditPolicy: see Server.admitCredit.
func (b *bearerPolicy) AdmitCredit(ctx context.Context, rec *protocol.SpentRequest) error {
	if b.credit == nil {
		return nil
	}
	return b.credit(ctx, rec, b.Held() > b.limit)
}

// bearerValue returns the value of the spends whose coins are in pubs.
func bearerValue(spends []*coin.Spend, pubs [][32]byte) uint64 {
	var v uint64
	for _, s := range spends {
		if slices.Contains(pubs, s.Pub) {
			v += s.Amount
		}
	}
	return v
}

// release lowers held by v.
func (b *bearerPolicy) release(v uint64) {
	b.mu.Lock()
	b.held -= min(v, b.held)
	b.mu.Unlock()
}

// Held returns the bearer value counted.
func (b *bearerPolicy) Held() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}

func saturatingAdd(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint64(0)
}

// depositFirstTimeout bounds the mint's answer to a deposit made before
// serving, so that a call whose deposit gets no answer still has the time
// to record its coins and answer INTERNAL.
const depositFirstTimeout = 10 * time.Second

// Messages of the INTERNAL answers given when a deposit made before
// serving is unsettled. Each fits protocol.MaxErrorMessage.
const (
	msgDepositUnknown = "the mint did not answer the deposit of your bearer coins: they may be this server's now; " +
		"retry this same request here (it is served on their credit), or only swap them later"
	msgDepositNotTaken = "the mint took only some of your bearer coins; retry this same request here (it is served on their credit)"
)

// depositFirst deposits the bearer spends of one call at the mint before
// the call is served, and returns nil if the mint credited all of them to
// this server. If it credited none, or never had the deposit (it could
// not be reached), its error is the refusal (the code of the first coin
// refused, or RATE_LIMITED), which promises the client that its coins
// were not recorded (never INTERNAL). Otherwise it returns
// a *protocol.DepositUnsettledError and the paywall records the coins the
// mint may hold and answers INTERNAL: when the mint did not answer (the
// connection broke, the time ran out, the mint stopped: it may have
// committed), or when it credited some coins and refused, or did not
// look at, others (the credited ones are this server's).
func (s *Server) depositFirst(ctx context.Context, digest [protocol.DigestSize]byte, spends []*coin.Spend) error {
	items := make([]coin.Item, len(spends))
	for i, sp := range spends {
		items[i] = coin.Item{Spend: sp, Digest: digest}
	}
	cctx, cancel := context.WithTimeout(ctx, depositFirstTimeout)
	res, err := s.Mint().Deposit(cctx, items)
	cancel()
	if err != nil {
		if errors.Is(err, protocol.ErrNotSent) || protocol.OutcomeOf(err) == protocol.OutcomeRefused {
			// The mint never saw the deposit, or refused it whole: it
			// committed nothing.
			s.log.Warn("depositing bearer coins before serving", "err", err)
			return &protocol.Error{Code: pb.Code_RATE_LIMITED, Message: "cannot deposit bearer coins at the mint now; pay with coins designated to this server"}
		}
		s.log.Warn("no verdict on bearer coins deposited before serving; recording them as credit for a retry", "coins", len(spends), "err", err)
		return &protocol.DepositUnsettledError{Reason: msgDepositUnknown, Err: err}
	}
	credited, firstRefused := 0, -1
	var refused [][32]byte
	for i, r := range res {
		switch r.Status {
		case pb.DepositStatus_DEPOSIT_CREDITED, pb.DepositStatus_DEPOSIT_ALREADY_CREDITED:
			credited++
		case pb.DepositStatus_DEPOSIT_DOUBLE_SPENT, pb.DepositStatus_DEPOSIT_EXPIRED,
			pb.DepositStatus_DEPOSIT_REVOKED, pb.DepositStatus_DEPOSIT_INVALID:
			refused = append(refused, spends[i].Pub)
			if firstRefused < 0 {
				firstRefused = i
			}
		}
		// Any other status (DEPOSIT_NOT_TAKEN) is no verdict.
	}
	switch {
	case credited == len(spends):
		return nil
	case credited == 0 && firstRefused >= 0:
		st := res[firstRefused].Status
		return &protocol.Error{Code: depositRefusalCode(st), Message: fmt.Sprintf("spend %d: the mint refused the coin (%s)", firstRefused, depositStatusName(st))}
	case credited == 0:
		return &protocol.Error{Code: pb.Code_RATE_LIMITED, Message: "the mint did not take the bearer coins now; pay with coins designated to this server"}
	case firstRefused >= 0:
		st := res[firstRefused].Status
		s.log.Warn("the mint credited some bearer coins of a call and refused others", "credited", credited, "refused", len(refused), "status", depositStatusName(st))
		return &protocol.DepositUnsettledError{Refused: refused, Reason: fmt.Sprintf(
			"the mint credited %d of your %d bearer coins to this server and refused spend %d (%s): the credited ones are this server's, and a retry of this same request is served if they cover its price",
			credited, len(spends), firstRefused, depositStatusName(st))}
	default:
		return &protocol.DepositUnsettledError{Reason: msgDepositNotTaken}
	}
}

// depositRefusalCode returns the answer code of a coin the mint refused.
func depositRefusalCode(st pb.DepositStatus) pb.Code {
	switch st {
	case pb.DepositStatus_DEPOSIT_DOUBLE_SPENT:
		return pb.Code_DOUBLE_SPEND
	case pb.DepositStatus_DEPOSIT_EXPIRED:
		return pb.Code_EXPIRED_KEYSET
	case pb.DepositStatus_DEPOSIT_REVOKED:
		return pb.Code_REVOKED_KEYSET
	case pb.DepositStatus_DEPOSIT_INVALID:
		return pb.Code_INVALID_COIN
	}
	return pb.Code_RATE_LIMITED
}

// coinRefusalCode returns the answer code of a coin with the mint's
// final verdict st, and false if st credits the server.
func coinRefusalCode(st spentset.CoinState) (pb.Code, bool) {
	switch st {
	case spentset.CoinDoubleSpent:
		return pb.Code_DOUBLE_SPEND, true
	case spentset.CoinInvalid:
		return pb.Code_INVALID_COIN, true
	case spentset.CoinExpired:
		return pb.Code_EXPIRED_KEYSET, true
	case spentset.CoinRevoked:
		return pb.Code_REVOKED_KEYSET, true
	}
	return 0, false
}

// admitCredit decides whether request rec, recorded earlier and not
// answered, is served now on the credit of its coins (the policy's
// protocol.CreditPolicy; over says whether the undeposited bearer value
// is over the cap). A coin of the request that the mint refused (the
// client swapped it, or paid another server with it, after an unsettled
// deposit) is not this server's: the request is not served on it. Over
// the cap, the request's bearer coins still pending are deposited first,
// as a call's bearer coins are: the request is served once the mint has
// credited them. Its errors are answered INTERNAL; the coins stay credit
// for a later retry.
func (s *Server) admitCredit(ctx context.Context, rec *protocol.SpentRequest, over bool) error {
	if err := s.checkNotRefused(ctx, rec); err != nil || !over {
		return err
	}
	left, err := s.settleBearer(ctx, rec.Coins)
	if err != nil {
		s.log.Warn("depositing a request's bearer coins before serving it on their credit", "request", fmt.Sprintf("%x", rec.ID), "err", err)
		return &protocol.Error{Code: pb.Code_INTERNAL, Message: "the mint has not confirmed the coins recorded for this request yet; retry it later"}
	}
	if left > 0 {
		return &protocol.Error{Code: pb.Code_INTERNAL, Message: "the mint has not given its verdict on the coins recorded for this request yet; retry it later"}
	}
	return s.checkNotRefused(ctx, rec)
}

// checkNotRefused returns an error if the mint refused a coin of rec.
func (s *Server) checkNotRefused(ctx context.Context, rec *protocol.SpentRequest) error {
	infos, err := s.spent.Coins(ctx, rec.Coins)
	if err != nil {
		return fmt.Errorf("node: reading the coins of request %x: %w", rec.ID, err)
	}
	for i, in := range infos {
		if code, refused := coinRefusalCode(in.State); refused {
			return &protocol.Error{Code: code, Message: fmt.Sprintf(
				"the mint refused coin %x of this request (%s): it is not this server's", rec.Coins[i][:8], in.State)}
		}
	}
	return nil
}

// settleBearer deposits the bearer coins among pubs that are pending,
// now, records the mint's verdicts, and returns the number still pending
// (the mint gave no verdict on them). It waits for a deposit round in
// progress.
func (s *Server) settleBearer(ctx context.Context, pubs [][32]byte) (int, error) {
	select {
	case s.depositing <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-s.depositing }()
	pending, err := s.pendingBearer(ctx, pubs)
	if err != nil || len(pending) == 0 {
		return 0, err
	}
	if _, err := s.depositBatch(ctx, pending, depositFirstTimeout); err != nil {
		return len(pending), err
	}
	pending, err = s.pendingBearer(ctx, pubs)
	return len(pending), err
}

// pendingBearer returns the bearer coins among pubs that are pending.
func (s *Server) pendingBearer(ctx context.Context, pubs [][32]byte) ([]spentset.Deposit, error) {
	pending, err := s.spent.PendingOf(ctx, pubs)
	if err != nil {
		return nil, fmt.Errorf("node: reading pending coins: %w", err)
	}
	return slices.DeleteFunc(pending, func(d spentset.Deposit) bool { return d.Spend.Designated != [32]byte{} }), nil
}

// kickDeposits wakes the deposit loop.
func (s *Server) kickDeposits() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Backoff of the deposit loop after a failed round.
const (
	depositMinBackoff = time.Second
	depositMaxBackoff = 5 * time.Minute
)

// depositLoop deposits pending coins every DepositInterval and when
// kicked, retrying a failed round after a backoff that doubles from one
// second up to five minutes, until Close. It also prunes the spent set
// every SpentPruneInterval.
func (s *Server) depositLoop() {
	defer s.wg.Done()
	t := time.NewTimer(s.cfg.DepositInterval)
	defer t.Stop()
	var backoff time.Duration
	lastPrune := time.Now()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		if _, err := s.DepositNow(s.ctx); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, depositMinBackoff), depositMaxBackoff)
			s.log.Warn("deposit round failed", "err", err, "retry_in", backoff)
			t.Reset(backoff)
		} else {
			backoff = 0
			t.Reset(s.cfg.DepositInterval)
		}
		if time.Since(lastPrune) >= s.cfg.SpentPruneInterval {
			lastPrune = time.Now()
			s.pruneSpent(s.ctx)
		}
	}
}

// DepositNow runs one deposit round: it sends the coins pending in the
// spent set to the mint, in batches of at most protocol.MaxDepositCoins,
// and records the mint's verdicts (spentset.Store.Acknowledge). It
// returns the number of coins acknowledged. Coins the mint gives no final
// verdict on stay pending for the next round. The deposit loop calls it;
// calls are serialised.
func (s *Server) DepositNow(ctx context.Context) (int, error) {
	select {
	case s.depositing <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-s.depositing }()
	s.refreshMintAddrs()
	total := 0
	for {
		pending, err := s.spent.PendingDeposits(ctx, protocol.MaxDepositCoins)
		if err != nil {
			s.metrics.depositRound("error")
			return total, fmt.Errorf("node: reading pending deposits: %w", err)
		}
		if len(pending) == 0 {
			s.metrics.depositRound("ok")
			return total, nil
		}
		n, err := s.depositBatch(ctx, pending, protocol.DefaultCallTimeout)
		total += n
		if err != nil {
			s.metrics.depositRound("error")
			return total, err
		}
		if n == 0 || len(pending) < protocol.MaxDepositCoins {
			s.metrics.depositRound("ok")
			return total, nil
		}
	}
}

// depositBatch deposits pending coins (at most protocol.MaxDepositCoins)
// at the mint, waiting at most timeout for its answer, records its
// verdicts and releases the bearer value acknowledged. It returns the
// number of coins acknowledged. The caller holds s.depositing (DepositNow,
// settleBearer), so that a coin is acknowledged, and its value released,
// once.
func (s *Server) depositBatch(ctx context.Context, pending []spentset.Deposit, timeout time.Duration) (int, error) {
	items := make([]coin.Item, len(pending))
	for i, d := range pending {
		items[i] = coin.Item{Spend: d.Spend, Digest: d.Digest}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	res, err := s.Mint().Deposit(cctx, items)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("node: depositing %d coins at the mint: %w", len(items), err)
	}
	var outcomes []spentset.Outcome
	var bearer uint64
	for i, r := range res {
		st, ok := spentset.DepositState(r.Status)
		if !ok {
			continue
		}
		sp := pending[i].Spend
		outcomes = append(outcomes, spentset.Outcome{CoinPub: sp.Pub, State: st})
		if sp.Designated == ([32]byte{}) {
			bearer = saturatingAdd(bearer, sp.Amount)
		}
		s.metrics.depositCoin(r.Status)
		if r.Status == pb.DepositStatus_DEPOSIT_DOUBLE_SPENT {
			s.log.Warn("a deposited coin was spent elsewhere first", "request", fmt.Sprintf("%x", pending[i].RequestID), "amount", sp.Amount)
		}
	}
	if len(outcomes) == 0 {
		return 0, nil
	}
	// The mint has given its verdicts: record them even if the server is
	// stopping, or the call that asked has ended, so that they are not
	// asked for again.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	_, err = s.spent.Acknowledge(actx, outcomes)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("node: recording the mint's verdicts: %w", err)
	}
	s.policy.release(bearer)
	return len(outcomes), nil
}

// pruneSpent forgets the requests whose keysets' deposit windows have
// closed.
func (s *Server) pruneSpent(ctx context.Context) {
	for {
		n, err := s.spent.Prune(ctx, s.cfg.Clock(), spentset.MaxPrune)
		if err != nil {
			s.log.Warn("pruning the spent set", "err", err)
			return
		}
		if n < spentset.MaxPrune {
			return
		}
	}
}
