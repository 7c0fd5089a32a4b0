package node

import (
	"context"
	"fmt"
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
// (protocol.BearerCap counts only the coins it admits under the cap, so a
// deposit loop that releases every bearer coin it acknowledges would
// drive its count below the truth; and spentset.WithBearerCap refuses in
// Record, after the coins are verified, with an error the paywall answers
// as INTERNAL, which tells the client its coins may be recorded.)
type bearerPolicy struct {
	limit   uint64
	refuse  bool
	deposit func(ctx context.Context, digest [protocol.DigestSize]byte, spends []*coin.Spend) error
	kick    func()

	mu   sync.Mutex
	held uint64
}

var _ protocol.DepositPolicy = (*bearerPolicy)(nil)

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
	if err := b.deposit(ctx, digest, spends); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.held = saturatingAdd(b.held, v)
	b.mu.Unlock()
	return undo, nil
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

// depositFirst deposits the bearer spends of one call at the mint before
// the call is served, and returns nil if the mint credited all of them to
// this server. Its errors are answers that promise the client its coins
// were not recorded (never INTERNAL).
func (s *Server) depositFirst(ctx context.Context, digest [protocol.DigestSize]byte, spends []*coin.Spend) error {
	items := make([]coin.Item, len(spends))
	for i, sp := range spends {
		items[i] = coin.Item{Spend: sp, Digest: digest}
	}
	res, err := s.Mint().Deposit(ctx, items)
	if err != nil {
		s.log.Warn("depositing bearer coins before serving", "err", err)
		return &protocol.Error{Code: pb.Code_RATE_LIMITED, Message: "cannot deposit bearer coins at the mint now; pay with coins designated to this server"}
	}
	for i, r := range res {
		var code pb.Code
		switch r.Status {
		case pb.DepositStatus_DEPOSIT_CREDITED, pb.DepositStatus_DEPOSIT_ALREADY_CREDITED:
			continue
		case pb.DepositStatus_DEPOSIT_DOUBLE_SPENT:
			code = pb.Code_DOUBLE_SPEND
		case pb.DepositStatus_DEPOSIT_EXPIRED:
			code = pb.Code_EXPIRED_KEYSET
		case pb.DepositStatus_DEPOSIT_REVOKED:
			code = pb.Code_REVOKED_KEYSET
		case pb.DepositStatus_DEPOSIT_INVALID:
			code = pb.Code_INVALID_COIN
		default:
			code = pb.Code_RATE_LIMITED
		}
		return &protocol.Error{Code: code, Message: fmt.Sprintf("spend %d: the mint refused the coin (%s)", i, depositStatusName(r.Status))}
	}
	return nil
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
	s.depositMu.Lock()
	defer s.depositMu.Unlock()
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
		items := make([]coin.Item, len(pending))
		for i, d := range pending {
			items[i] = coin.Item{Spend: d.Spend, Digest: d.Digest}
		}
		cctx, cancel := context.WithTimeout(ctx, protocol.DefaultCallTimeout)
		res, err := s.mint.Deposit(cctx, items)
		cancel()
		if err != nil {
			s.metrics.depositRound("error")
			return total, fmt.Errorf("node: depositing %d coins at the mint: %w", len(items), err)
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
		if len(outcomes) > 0 {
			// The mint has given its verdicts: record them even if the
			// server is stopping, so that they are not asked for again.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_, err := s.spent.Acknowledge(actx, outcomes)
			cancel()
			if err != nil {
				s.metrics.depositRound("error")
				return total, fmt.Errorf("node: recording the mint's verdicts: %w", err)
			}
			s.policy.release(bearer)
			total += len(outcomes)
		}
		if len(outcomes) == 0 || len(pending) < protocol.MaxDepositCoins {
			s.metrics.depositRound("ok")
			return total, nil
		}
	}
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
