package node

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/pricing"
	"github.com/scripnet/scrip/node/wallet"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// Paying, withdrawing and swapping: the client's side of the money.
//
// The wallet (node/wallet) keeps every coin's state durably; this file
// decides which coins to use. A payment reserves coins for one server and
// one request before they leave; a server's success spends them, its
// refusal binds them to it (usable there again, or at the mint), and no
// answer leaves them reserved until housekeeping swaps the bearer ones at
// the mint. When no subset of the coins pays a price exactly, the client
// swaps a bearer coin at the mint for the price and its change, then pays.
//
// A swap is journalled (client directory, swaps/) before its coins leave:
// the request's exact body, its input coins and the counters of its
// output coins, so that a swap interrupted by a crash is sent again with
// the same bytes and the same spends, and the mint answers it once.

// clientPayer is the client seen as a protocol.Payer: it pays from the
// wallet.
type clientPayer Client

var _ protocol.Payer = (*clientPayer)(nil)

// opBill is what one operation (an upload or a download) has paid so far;
// the market's budgets are checked against it.
type opBill struct {
	op  pricing.Op
	cap uint64 // the most the operation may pay; 0: only the budgets bound it

	mu    sync.Mutex
	spent uint64
}

// allow refuses a payment that would take the operation past its cap.
func (b *opBill) allow(amount uint64, unit string) error {
	if b.cap == 0 {
		return nil
	}
	if spent := b.total(); spent+amount > b.cap || spent+amount < spent {
		return fmt.Errorf("%w: this %s may cost at most %d %s (%d paid, %d asked); set a budget to allow more",
			pricing.ErrOverBudget, b.op, b.cap, unit, spent, amount)
	}
	return nil
}

func (b *opBill) add(v uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spent += v
}

func (b *opBill) total() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.spent
}

// callBill travels in the context of one paid call: the operation it
// belongs to, the most it may pay, and what it paid.
type callBill struct {
	op *opBill
	// limit, if limited, is the most the call may pay (an upload's, from
	// the ceiling): 0 pays nothing. A call not limited has no bound but
	// the budgets and ceiling.
	limit   uint64
	limited bool
	// ceiling, if not nil, is the market's ceiling on the call (a
	// download's, client_history.go), which applies even at 0.
	ceiling *callCeiling

	mu      sync.Mutex
	paid    uint64 // coins the server took
	unknown uint64 // coins whose fate is unknown
}

func (b *callBill) cost() (paid, unknown uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.paid, b.unknown
}

type billKey struct{}

func withBill(ctx context.Context, b *callBill) context.Context {
	return context.WithValue(ctx, billKey{}, b)
}

func billFrom(ctx context.Context) *callBill {
	b, _ := ctx.Value(billKey{}).(*callBill)
	return b
}

// Pay implements protocol.Payer: it checks the call's limit (a payment up
// front, under a cached schedule, asks no policy) and the budgets, then
// reserves coins worth amount in the wallet for server and this request,
// swapping at the mint for change if no subset of the coins pays exactly.
func (p *clientPayer) Pay(ctx context.Context, server peer.ID, requestID []byte, unit string, amount uint64, digest [protocol.DigestSize]byte) ([]*coin.Spend, error) {
	c := (*Client)(p)
	if unit != c.unit {
		return nil, fmt.Errorf("%w: server %s prices in %q, the wallet holds %q", protocol.ErrGaveUp, server, unit, c.unit)
	}
	if err := billFrom(ctx).checkLimit(server, amount, c.unit); err != nil {
		return nil, err
	}
	if b := billFrom(ctx); b != nil && b.op != nil {
		if err := c.market.Allow(b.op.op, b.op.total(), amount); err != nil {
			return nil, err
		}
		if err := b.op.allow(amount, c.unit); err != nil {
			return nil, err
		}
	}
	// Coins are chosen under mintMu, which swaps also hold, so that change
	// made for this payment is not taken by another one.
	c.mintMu.Lock()
	defer c.mintMu.Unlock()
	spends, err := c.wallet.Reserve(ctx, []byte(server), requestID, digest, amount)
	for attempt := 0; attempt < 2 && (errors.Is(err, coin.ErrNoExactChange) || errors.Is(err, wallet.ErrTooManyCoins)); attempt++ {
		if cerr := c.makeChange(ctx, server, amount); cerr != nil {
			return nil, cerr
		}
		spends, err = c.wallet.Reserve(ctx, []byte(server), requestID, digest, amount)
	}
	if errors.Is(err, wallet.ErrInsufficientFunds) {
		return nil, c.noFunds(ctx, amount)
	}
	return spends, err
}

// noFunds explains a payment the wallet cannot make.
func (c *Client) noFunds(ctx context.Context, price uint64) error {
	b, err := c.wallet.Balance(ctx)
	if err != nil {
		return fmt.Errorf("%w: a call costs %d %s", ErrNoFunds, price, c.unit)
	}
	return fmt.Errorf("%w: the wallet holds %d %s unspent (%d reserved), a call costs %d; add funds with `scrip wallet fund VOUCHER`",
		ErrNoFunds, b.Unspent, c.unit, b.Reserved, price)
}

// Settle implements protocol.Payer: the server's answer decides the coins'
// state; with no answer they stay reserved for housekeeping to refresh.
func (p *clientPayer) Settle(ctx context.Context, server peer.ID, requestID []byte, spends []*coin.Spend, outcome protocol.Outcome) {
	c := (*Client)(p)
	var sum uint64
	for _, s := range spends {
		sum += s.Amount
	}
	c.metrics.coins.WithLabelValues(outcome.String()).Add(float64(len(spends)))
	b := billFrom(ctx)
	var err error
	switch outcome {
	case protocol.OutcomeSpent:
		err = c.wallet.Settle(ctx, requestID, true)
		c.market.Charge(sum)
		c.metrics.spend.Add(float64(sum))
		if b != nil {
			b.mu.Lock()
			b.paid += sum
			b.mu.Unlock()
		}
	case protocol.OutcomeRefused:
		err = c.wallet.Settle(ctx, requestID, false)
	default:
		// The server may hold the coins as credit for this request; they
		// stay reserved, and housekeeping swaps the bearer ones after
		// RefreshAfter. Count them as spent for the budgets.
		c.market.Charge(sum)
		if b != nil {
			b.mu.Lock()
			b.unknown += sum
			b.mu.Unlock()
		}
	}
	if b != nil && b.op != nil && outcome != protocol.OutcomeRefused {
		b.op.add(sum)
	}
	if err != nil {
		c.log.Error("settling a payment", "server", server, "err", err)
	}
}

// policy is the client's payment policy: it learns the schedule offered,
// pays what the server asks if that is what the call costs under it, and
// never more than the call's limit (the market's ceiling for an upload,
// and for a download when the market has history).
func (c *Client) policy(ctx context.Context, o *protocol.Offer) error {
	if err := c.market.Observe(o.Schedule.Schedule); err != nil {
		return fmt.Errorf("%w: %w", protocol.ErrGaveUp, err)
	}
	c.setSchedule(o.Server, o.Schedule)
	if err := protocol.PayComputed(ctx, o); err != nil {
		return err
	}
	if err := billFrom(ctx).checkLimit(o.Server, o.Quote, c.unit); err != nil {
		return err
	}
	if b := billFrom(ctx); b != nil && b.op != nil {
		if err := b.op.allow(o.Quote, c.unit); err != nil {
			return err
		}
	}
	return nil
}

// ---- coins ----

// swapOut is one coin a swap or withdrawal makes.
type swapOut struct {
	amount     uint64
	designated [32]byte
}

// maxFundCoins bounds the coins one Fund withdraws.
const maxFundCoins = 16 * protocol.MaxWithdrawCoins

// denominate splits amount into the keyset's denominations, largest
// first, with the fewest coins.
func denominate(amount uint64, ks *coin.Keyset, max int) ([]uint64, error) {
	amts := ks.Amounts()
	var out []uint64
	for i := len(amts) - 1; i >= 0 && amount > 0; i-- {
		a := amts[i]
		n := amount / a
		if n > uint64(max-len(out)) {
			return nil, fmt.Errorf("client: %d %s needs more than %d coins", amount, ks.Unit, max)
		}
		for ; n > 0; n-- {
			out = append(out, a)
		}
		amount %= a
	}
	if amount != 0 {
		return nil, fmt.Errorf("client: the mint's coins cannot make %d %s", amount, ks.Unit)
	}
	return out, nil
}

// bearerCoins returns the bearer coins the mint would swap now: unspent
// or bound to a server, of a keyset inside its deposit window.
func (c *Client) bearerCoins(ctx context.Context) ([]wallet.CoinInfo, error) {
	all, err := c.wallet.Coins(ctx)
	if err != nil {
		return nil, err
	}
	now := c.now()
	var out []wallet.CoinInfo
	for _, ci := range all {
		if ci.Coin.Designated != ([32]byte{}) || (ci.State != wallet.Unspent && ci.State != wallet.Bound) {
			continue
		}
		ks, ok := c.wallet.Keyset(ci.Coin.KeysetID)
		if !ok || !ks.Open(coin.WindowDeposit, now) {
			continue
		}
		out = append(out, ci)
	}
	return out, nil
}

// pickInputs chooses bearer coins worth at least need: the smallest
// single coin that suffices, or else the largest coins until they do,
// coins bound to a server first among equal amounts.
func pickInputs(coins []wallet.CoinInfo, need uint64) (pubs [][32]byte, total uint64, ok bool) {
	slices.SortStableFunc(coins, func(a, b wallet.CoinInfo) int {
		if c := cmp.Compare(a.Coin.Amount, b.Coin.Amount); c != 0 {
			return c
		}
		return cmp.Compare(boolRank(a.State != wallet.Bound), boolRank(b.State != wallet.Bound))
	})
	for _, ci := range coins {
		if ci.Coin.Amount >= need {
			return [][32]byte{ci.Coin.Pub}, ci.Coin.Amount, true
		}
	}
	for i := len(coins) - 1; i >= 0 && total < need && len(pubs) < protocol.MaxSwapInputs; i-- {
		pubs = append(pubs, coins[i].Coin.Pub)
		total += coins[i].Coin.Amount
	}
	return pubs, total, total >= need
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// makeChange swaps bearer coins at the mint so that amount can be paid
// exactly at server: into coins worth amount and the change. c.mintMu
// must be held.
func (c *Client) makeChange(ctx context.Context, server peer.ID, amount uint64) error {
	all, err := c.wallet.Coins(ctx)
	if err != nil {
		return err
	}
	// The coins Reserve may use at server: another payment may have made
	// change meanwhile.
	d := coin.Designation([]byte(server))
	now := c.now()
	var usable []uint64
	for _, ci := range all {
		ks, ok := c.wallet.Keyset(ci.Coin.KeysetID)
		if !ok || !ks.Open(coin.WindowSpend, now) {
			continue
		}
		if (ci.State == wallet.Unspent && (ci.Coin.Designated == [32]byte{} || ci.Coin.Designated == d)) ||
			(ci.State == wallet.Bound && string(ci.Server) == string(server)) {
			usable = append(usable, ci.Coin.Amount)
		}
	}
	if idx, err := coin.Select(usable, amount); err == nil && len(idx) <= wallet.MaxSpends {
		return nil
	}
	coins, err := c.bearerCoins(ctx)
	if err != nil {
		return err
	}
	ks, err := c.issueKeyset()
	if err != nil {
		return err
	}
	pubs, total, ok := pickInputs(coins, amount)
	if !ok {
		return c.noFunds(ctx, amount)
	}
	outs, err := c.outputs(ks, amount, total-amount, [32]byte{})
	if err != nil {
		return err
	}
	c.log.Debug("swapping for change", "server", server, "inputs", len(pubs), "outputs", len(outs))
	_, err = c.swap(ctx, pubs, outs)
	return err
}

// outputs returns the coins of a swap: pay designated as designated, and
// rest as bearer coins.
func (c *Client) outputs(ks *coin.Keyset, pay, rest uint64, designated [32]byte) ([]swapOut, error) {
	a, err := denominate(pay, ks, protocol.MaxSwapOutputs)
	if err != nil {
		return nil, err
	}
	b, err := denominate(rest, ks, protocol.MaxSwapOutputs-len(a))
	if err != nil {
		return nil, err
	}
	out := make([]swapOut, 0, len(a)+len(b))
	for _, v := range a {
		out = append(out, swapOut{v, designated})
	}
	for _, v := range b {
		out = append(out, swapOut{amount: v})
	}
	return out, nil
}

// ---- swaps ----

// swapJournal is a swap in flight, as stored in the client directory.
type swapJournal struct {
	RequestID []byte   `json:"request_id"`
	Body      []byte   `json:"body"`
	Inputs    []string `json:"inputs"`   // coin public keys, hex
	Counters  []uint64 `json:"counters"` // of the output coins, in the body's order
}

func (j *swapJournal) pubs() ([][32]byte, error) {
	out := make([][32]byte, len(j.Inputs))
	for i, s := range j.Inputs {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("client: swap journal: bad coin key")
		}
		out[i] = [32]byte(b)
	}
	return out, nil
}

// journalPath is the journal entry of request id in the client
// directory's subdirectory dir (clientSwapDir, clientRecoupDir).
func (c *Client) journalPath(dir string, id []byte) string {
	return filepath.Join(c.cfg.Dir, dir, hex.EncodeToString(id)+".json")
}

// writeJournalIn writes j, durably, as an entry of dir.
func (c *Client) writeJournalIn(dir string, j *swapJournal) error {
	if err := os.MkdirAll(filepath.Join(c.cfg.Dir, dir), 0o700); err != nil {
		return err
	}
	return writeFileAtomic(c.journalPath(dir, j.RequestID), clientJSON(j), 0o600)
}

// deleteJournalIn removes the entry of j from dir.
func (c *Client) deleteJournalIn(dir string, j *swapJournal) {
	if err := os.Remove(c.journalPath(dir, j.RequestID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Error("removing a journal entry", "journal", dir, "err", err)
	}
}

func (c *Client) writeJournal(j *swapJournal) error { return c.writeJournalIn(clientSwapDir, j) }
func (c *Client) deleteJournal(j *swapJournal)      { c.deleteJournalIn(clientSwapDir, j) }

// journalFiles returns the paths of the entries of journal dir, in name
// order; none if the directory does not exist.
func (c *Client) journalFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(c.cfg.Dir, dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".json") {
			out = append(out, filepath.Join(c.cfg.Dir, dir, e.Name()))
		}
	}
	return out, nil
}

func (c *Client) readJournals() ([]*swapJournal, error) {
	paths, err := c.journalFiles(clientSwapDir)
	if err != nil {
		return nil, err
	}
	var out []*swapJournal
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		j := new(swapJournal)
		if err := json.Unmarshal(b, j); err != nil || len(j.RequestID) != protocol.RequestIDSize {
			return nil, fmt.Errorf("client: swap journal %s does not parse", filepath.Base(path))
		}
		out = append(out, j)
	}
	return out, nil
}

// swap swaps the coins pubs at the mint for new coins outs, of equal
// total, and returns the new coins. c.mintMu must be held.
func (c *Client) swap(ctx context.Context, pubs [][32]byte, outs []swapOut) ([]*coin.Coin, error) {
	ks, err := c.issueKeyset()
	if err != nil {
		return nil, err
	}
	// One NextWithdrawals call per designation, in the order of outs.
	var wds []*wallet.Withdrawal
	for len(outs) > 0 {
		d := outs[0].designated
		n := 1
		for n < len(outs) && outs[n].designated == d {
			n++
		}
		amts := make([]uint64, n)
		for i := range amts {
			amts[i] = outs[i].amount
		}
		w, err := c.wallet.NextWithdrawals(ctx, ks, amts, d)
		if err != nil {
			c.abandon(ctx, wds)
			return nil, err
		}
		wds = append(wds, w...)
		outs = outs[n:]
	}
	chs, err := c.challenges(ctx, ks, wds)
	if err != nil {
		c.abandon(ctx, wds)
		return nil, err
	}
	var rid [protocol.RequestIDSize]byte
	rand.Read(rid[:])
	body, err := protocol.NewSwapBody(rid, ks.ID(), chs)
	if err != nil {
		c.abandon(ctx, wds)
		return nil, err
	}
	j := &swapJournal{RequestID: rid[:], Body: body}
	for _, p := range pubs {
		j.Inputs = append(j.Inputs, hex.EncodeToString(p[:]))
	}
	for _, wd := range wds {
		j.Counters = append(j.Counters, wd.Counter)
	}
	if err := c.writeJournal(j); err != nil {
		c.abandon(ctx, wds)
		return nil, err
	}
	return c.runSwap(ctx, j, wds, true)
}

// challenges runs the first round of issuance for wds and returns their
// challenges, committed to the wallet.
func (c *Client) challenges(ctx context.Context, ks *coin.Keyset, wds []*wallet.Withdrawal) ([]protocol.BlindChallenge, error) {
	wcs := make([]protocol.WithdrawCoin, len(wds))
	for i, wd := range wds {
		wcs[i] = protocol.WithdrawCoin{Amount: wd.Amount, Nonce: wd.Nonce()}
	}
	comms, err := c.mint.WithdrawBegin(ctx, ks.ID(), wcs)
	if err != nil {
		return nil, c.mintErr(err)
	}
	chs := make([]protocol.BlindChallenge, len(wds))
	for i, wd := range wds {
		c0, c1, err := c.wallet.Challenges(ctx, wd, comms[i].R0, comms[i].R1)
		if err != nil {
			return nil, err
		}
		chs[i] = protocol.BlindChallenge{Amount: wd.Amount, Nonce: wd.Nonce(), C0: c0, C1: c1}
	}
	return chs, nil
}

// abandon forgets withdrawals whose challenges the mint never answered.
func (c *Client) abandon(ctx context.Context, wds []*wallet.Withdrawal) {
	for _, wd := range wds {
		if wd == nil {
			continue
		}
		if err := c.wallet.AbandonWithdrawal(context.WithoutCancel(ctx), wd); err != nil && !errors.Is(err, wallet.ErrUnknownWithdrawal) {
			c.log.Error("abandoning a withdrawal", "err", err)
		}
	}
}

// definite reports whether err is the mint's answer that it took nothing:
// any error answer but INTERNAL, or a swap refused for its inputs.
func definite(err error) bool {
	if _, ok := errors.AsType[*protocol.SwapRefusedError](err); ok {
		return true
	}
	e, ok := errors.AsType[*protocol.Error](err)
	return ok && e.Code != pb.Code_INTERNAL
}

// runSwap sends the swap of journal entry j (again, if resumed) and
// finishes its output coins wds (nil for coins finished already). first
// marks the first attempt: a wallet refusal then abandons the swap.
func (c *Client) runSwap(ctx context.Context, j *swapJournal, wds []*wallet.Withdrawal, first bool) ([]*coin.Coin, error) {
	pubs, err := j.pubs()
	if err != nil {
		return nil, err
	}
	digest := protocol.RequestDigest(protocol.MintID, j.Body)
	boundTo := c.boundServers(ctx, pubs)
	spends, err := c.wallet.ReserveSwap(ctx, j.RequestID, digest, pubs)
	if err != nil {
		if first {
			c.abandon(ctx, wds)
			c.deleteJournal(j)
			return nil, err
		}
		// The reservation was settled: the swap went through or was
		// refused. Finish what the mint answered, if anything.
		err = c.finishFromRestore(ctx, wds)
		if err == nil {
			c.deleteJournal(j)
		}
		return nil, err
	}
	var answers []coin.Answer
	for attempt := 0; ; attempt++ {
		answers, err = c.mint.Swap(ctx, j.Body, spends)
		if err == nil || definite(err) || attempt == 2 || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	switch {
	case err == nil:
		var out []*coin.Coin
		var errs []error
		for i, wd := range wds {
			if wd == nil {
				continue
			}
			cn, ferr := c.wallet.FinishWithdrawal(ctx, wd, answers[i])
			if ferr != nil {
				c.metrics.rejected.WithLabelValues("bad_signature").Inc()
				errs = append(errs, ferr)
				continue
			}
			c.metrics.verified.Inc()
			out = append(out, cn)
		}
		if serr := c.wallet.Settle(ctx, j.RequestID, true); serr != nil {
			errs = append(errs, serr)
		}
		c.deleteJournal(j)
		return out, errors.Join(errs...)
	case definite(err):
		// Nothing was spent and no output answered.
		if serr := c.wallet.Settle(ctx, j.RequestID, false); serr != nil {
			c.log.Error("settling a refused swap", "err", serr)
		}
		c.abandon(ctx, wds)
		c.deleteJournal(j)
		if sre, ok := errors.AsType[*protocol.SwapRefusedError](err); ok {
			var spent [][32]byte
			for i, in := range sre.Inputs {
				c.metrics.rejected.WithLabelValues("swap_" + strings.ToLower(strings.TrimPrefix(in.Status.String(), "DEPOSIT_"))).Inc()
				if in.Status == pb.DepositStatus_DEPOSIT_DOUBLE_SPENT && i < len(pubs) {
					spent = append(spent, pubs[i])
					c.checkEvidence(pubs[i], in.Conflict, boundTo)
				}
			}
			c.markSpent(ctx, spent)
		}
		return nil, fmt.Errorf("client: the mint refused a swap: %w", err)
	}
	return nil, c.mintErr(err)
}

// boundServers returns the servers that the coins among pubs are bound
// to: servers that refused them.
func (c *Client) boundServers(ctx context.Context, pubs [][32]byte) map[[32]byte]peer.ID {
	all, err := c.wallet.Coins(ctx)
	if err != nil {
		return nil
	}
	want := make(map[[32]byte]bool, len(pubs))
	for _, p := range pubs {
		want[p] = true
	}
	out := make(map[[32]byte]peer.ID)
	for _, ci := range all {
		if ci.State == wallet.Bound && want[ci.Coin.Pub] {
			if id, err := peer.IDFromBytes(ci.Server); err == nil {
				out[ci.Coin.Pub] = id
			}
		}
	}
	return out
}

// checkEvidence scores down a server that deposited a coin it had
// refused, as the mint's evidence of the deposit shows.
func (c *Client) checkEvidence(pub [32]byte, ev *protocol.DoubleSpendEvidence, boundTo map[[32]byte]peer.ID) {
	server, ok := boundTo[pub]
	if ev == nil || !ok || ev.Server != server {
		return
	}
	ks := make(coin.KeysetMap)
	for _, k := range c.wallet.Keysets() {
		ks[k.ID()] = k
	}
	if err := ev.Verify(ks, pub, c.now()); err != nil {
		return
	}
	c.log.Warn("a server deposited a coin it had refused", "server", server)
	c.scores.Report(server, pricing.EventMintEvidence)
}

// markSpent records coins that the mint reports spent (a restored
// wallet's coins spent before the restore, say) as spent in the wallet.
func (c *Client) markSpent(ctx context.Context, pubs [][32]byte) {
	if len(pubs) == 0 {
		return
	}
	id := make([]byte, protocol.RequestIDSize)
	rand.Read(id)
	// A reservation at the mint that is never sent, settled as taken.
	if _, err := c.wallet.ReserveSwap(ctx, id, [32]byte{}, pubs); err != nil {
		c.log.Error("marking coins spent", "err", err)
		return
	}
	if err := c.wallet.Settle(ctx, id, true); err != nil {
		c.log.Error("marking coins spent", "err", err)
	}
}

// finishFromRestore finishes withdrawals from the mint's stored answers;
// those it never answered are abandoned.
func (c *Client) finishFromRestore(ctx context.Context, wds []*wallet.Withdrawal) error {
	var live []*wallet.Withdrawal
	for _, wd := range wds {
		if wd != nil {
			live = append(live, wd)
		}
	}
	for len(live) > 0 {
		batch := live[:min(len(live), protocol.MaxRestoreNonces)]
		live = live[len(batch):]
		nonces := make([][32]byte, len(batch))
		for i, wd := range batch {
			nonces[i] = wd.Nonce()
		}
		rows, err := c.mint.Restore(ctx, nonces)
		if err != nil {
			return c.mintErr(err)
		}
		answered := make(map[int]bool)
		for _, row := range rows {
			for i, wd := range batch {
				c0, c1, ok := wd.Challenges()
				if answered[i] || !ok || row.Nonce != nonces[i] || row.KeysetID != wd.KeysetID || row.Amount != wd.Amount || !row.Matches(c0, c1) {
					continue
				}
				if _, err := c.wallet.FinishWithdrawal(ctx, wd, row.Answer); err != nil {
					c.metrics.rejected.WithLabelValues("bad_signature").Inc()
					c.log.Error("finishing a restored withdrawal", "err", err)
				} else {
					c.metrics.verified.Inc()
				}
				answered[i] = true
			}
		}
		for i, wd := range batch {
			if !answered[i] {
				c.abandon(ctx, []*wallet.Withdrawal{wd})
			}
		}
	}
	return nil
}

// resumeSwaps sends again the swaps of the journal.
func (c *Client) resumeSwaps(ctx context.Context) error {
	c.mintMu.Lock()
	defer c.mintMu.Unlock()
	js, err := c.readJournals()
	if err != nil || len(js) == 0 {
		return err
	}
	pend, err := c.wallet.PendingWithdrawals(ctx)
	if err != nil {
		return err
	}
	byCounter := make(map[uint64]*wallet.Withdrawal, len(pend))
	for _, wd := range pend {
		byCounter[wd.Counter] = wd
	}
	var errs []error
	for _, j := range js {
		wds := make([]*wallet.Withdrawal, len(j.Counters))
		for i, ctr := range j.Counters {
			wds[i] = byCounter[ctr]
		}
		if _, err := c.runSwap(ctx, j, wds, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// recoverWithdrawals finishes, from the mint's stored answers, the
// withdrawals left pending more than age ago by a crash or a mint that
// stopped answering (swaps' outputs excepted: the journal has them), and
// forgets those the mint never answered. No withdrawal is in flight while
// it runs (it holds mintMu); age leaves time to a mint that is slow to
// commit a withdrawal it received.
func (c *Client) recoverWithdrawals(ctx context.Context, age time.Duration) error {
	c.mintMu.Lock()
	defer c.mintMu.Unlock()
	pend, err := c.wallet.PendingWithdrawals(ctx)
	if err != nil || len(pend) == 0 {
		return err
	}
	js, err := c.readJournals()
	if err != nil {
		return err
	}
	inSwap := make(map[uint64]bool)
	for _, j := range js {
		for _, ctr := range j.Counters {
			inSwap[ctr] = true
		}
	}
	var ask []*wallet.Withdrawal
	for _, wd := range pend {
		if inSwap[wd.Counter] || c.now().Sub(wd.Created) < age {
			continue
		}
		if _, _, ok := wd.Challenges(); !ok {
			c.abandon(ctx, []*wallet.Withdrawal{wd}) // challenges never sent
			continue
		}
		ask = append(ask, wd)
	}
	return c.finishFromRestore(ctx, ask)
}

// refreshReserved swaps at the mint the bearer coins of payments that
// have waited longer than RefreshAfter for an answer: a server that never
// answers may or may not have taken them, and a swap settles it. Coins
// designated to such a server stay reserved there.
func (c *Client) refreshReserved(ctx context.Context) error {
	res, err := c.wallet.ReservedOlderThan(ctx, c.cfg.RefreshAfter)
	if err != nil || len(res) == 0 {
		return err
	}
	all, err := c.wallet.Coins(ctx)
	if err != nil {
		return err
	}
	info := make(map[[32]byte]wallet.CoinInfo, len(all))
	for _, ci := range all {
		info[ci.Coin.Pub] = ci
	}
	var pubs [][32]byte
	var total uint64
	for _, r := range res {
		if string(r.Server) == string(c.mintAI.ID) {
			continue // swaps: the journal resumes them
		}
		for _, p := range r.Coins {
			if ci, ok := info[p]; ok && ci.Coin.Designated == ([32]byte{}) && ci.State == wallet.Reserved {
				pubs = append(pubs, p)
				total += ci.Coin.Amount
			}
		}
	}
	return c.swapAll(ctx, pubs)
}

// swapAll swaps coins for fresh bearer coins of the same value, in
// batches; coins the mint reports spent are marked spent and the rest
// swapped again.
func (c *Client) swapAll(ctx context.Context, pubs [][32]byte) error {
	if len(pubs) == 0 {
		return nil
	}
	c.mintMu.Lock()
	defer c.mintMu.Unlock()
	all, err := c.wallet.Coins(ctx)
	if err != nil {
		return err
	}
	amount := make(map[[32]byte]uint64, len(all))
	for _, ci := range all {
		amount[ci.Coin.Pub] = ci.Coin.Amount
	}
	ks, err := c.issueKeyset()
	if err != nil {
		return err
	}
	var errs []error
	for len(pubs) > 0 {
		batch := pubs[:min(len(pubs), protocol.MaxSwapInputs)]
		pubs = pubs[len(batch):]
		for try := 0; try < 2 && len(batch) > 0; try++ {
			var total uint64
			for _, p := range batch {
				total += amount[p]
			}
			outs, err := c.outputs(ks, 0, total, [32]byte{})
			if err != nil {
				errs = append(errs, err)
				break
			}
			_, err = c.swap(ctx, batch, outs)
			if err == nil {
				break
			}
			sre, ok := errors.AsType[*protocol.SwapRefusedError](err)
			if !ok || try == 1 {
				errs = append(errs, err)
				break
			}
			// Swap the inputs the mint did not object to.
			var keep [][32]byte
			for i, in := range sre.Inputs {
				if in.Status == pb.DepositStatus_DEPOSIT_NOT_TAKEN && i < len(batch) {
					keep = append(keep, batch[i])
				}
			}
			batch = keep
		}
	}
	return errors.Join(errs...)
}

// ---- pools of designated coins ----

// topUpPools keeps a pool of coins designated to each of the most used
// servers, topping it up by a swap when it falls under half its target. A
// server takes designated coins whatever its bearer cap (see
// protocol.BearerCap).
func (c *Client) topUpPools(ctx context.Context) error {
	if c.cfg.PoolServers <= 0 {
		return nil
	}
	type cand struct {
		id    peer.ID
		calls uint64
		pos   int
	}
	var cands []cand
	c.mu.Lock()
	for i, id := range c.order {
		s := c.servers[id]
		if s.sched != nil && s.upToDate {
			cands = append(cands, cand{id, s.calls, i})
		}
	}
	c.mu.Unlock()
	slices.SortStableFunc(cands, func(a, b cand) int { return cmp.Compare(b.calls, a.calls) })
	var errs []error
	for _, cd := range cands[:min(len(cands), c.cfg.PoolServers)] {
		if c.scores.Penalised(cd.id) {
			continue
		}
		if err := c.topUp(ctx, cd.id, 0); err != nil {
			errs = append(errs, err)
			if errors.Is(err, ErrNoFunds) || errors.Is(err, ErrMintUnreachable) {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// topUp brings the pool of coins designated to server up to its target.
// With need > 0 (the server refused bearer coins for a call of that
// price), it also makes designated coins that pay need exactly, and
// swaps every bearer coin bound to the server, so that the next payment
// there uses designated coins only.
func (c *Client) topUp(ctx context.Context, server peer.ID, need uint64) error {
	c.mintMu.Lock()
	defer c.mintMu.Unlock()
	all, err := c.wallet.Coins(ctx)
	if err != nil {
		return err
	}
	d := coin.Designation([]byte(server))
	var have, bearer uint64
	for _, ci := range all {
		switch {
		case ci.State == wallet.Unspent && ci.Coin.Designated == d:
			have += ci.Coin.Amount
		case ci.State == wallet.Unspent && ci.Coin.Designated == [32]byte{}:
			bearer += ci.Coin.Amount
		}
	}
	target := c.cfg.PoolValue
	if target == 0 {
		target = (bearer + have) / 64
	}
	if need == 0 && (have >= target/2 || target == 0) {
		return nil
	}
	var add uint64 // pool value to add besides need
	if target > have {
		add = target - have
	}
	coins, err := c.bearerCoins(ctx)
	if err != nil {
		return err
	}
	var pubs [][32]byte
	var total uint64
	if need > 0 {
		// Bearer coins bound to the server would be offered to it again.
		coins = slices.DeleteFunc(coins, func(ci wallet.CoinInfo) bool {
			if ci.State == wallet.Bound && string(ci.Server) == string(server) && len(pubs) < protocol.MaxSwapInputs/2 {
				pubs = append(pubs, ci.Coin.Pub)
				total += ci.Coin.Amount
				return true
			}
			return false
		})
	}
	want := need + add
	if total < want {
		more, sum, ok := pickInputs(coins, want-total)
		if !ok && need > 0 && total+sum < need {
			return c.noFunds(ctx, need)
		}
		if !ok {
			if need == 0 {
				return nil // a pool is a convenience; keep the bearer coins
			}
			add = total + sum - need
		}
		pubs = append(pubs, more...)
		total += sum
	}
	if len(pubs) == 0 {
		return nil
	}
	ks, err := c.issueKeyset()
	if err != nil {
		return err
	}
	exact, err := denominate(need, ks, protocol.MaxSwapOutputs)
	if err != nil {
		return err
	}
	add = min(add, total-need)
	outs, err := c.outputs(ks, add, total-need-add, d)
	if err != nil {
		return err
	}
	for _, a := range exact {
		outs = append(outs, swapOut{a, d})
	}
	slices.SortStableFunc(outs, func(a, b swapOut) int { return cmp.Compare(boolRank(a.designated == d), boolRank(b.designated == d)) })
	_, err = c.swap(ctx, pubs, outs)
	return err
}

// ---- withdrawals ----

// FundResult is what [Client.Fund] withdrew.
type FundResult struct {
	// Withdrawn is the value of the new coins, in Unit.
	Withdrawn uint64 `json:"withdrawn"`
	// Coins is the number of new coins.
	Coins int    `json:"coins"`
	Unit  string `json:"unit"`
	// Short is set when the voucher held less than the amount asked.
	Short bool `json:"short,omitempty"`
	// Balance is the wallet's unspent value afterwards.
	Balance uint64 `json:"balance"`
}

// errVoucherShort is the mint's INSUFFICIENT_PAYMENT to a withdrawal: the
// voucher holds less than the coins asked for (or nothing).
var errVoucherShort = errors.New("client: the voucher holds less than asked")

// Fund withdraws bearer coins paid by a voucher: amount units if amount is
// not 0, and otherwise everything the voucher holds. The mint does not say
// what a voucher holds, so without an amount Fund asks for coins of
// decreasing size until the mint refuses the smallest. The coins are
// split into the mint's denominations (coin.Decompose) and withdrawn in
// batches; each batch is charged to the voucher once, however often it is
// retried. The voucher code is never logged or stored.
//
// Errors: [ErrVoucherUnknown] for a code the mint does not know (or text
// that is not a code), [ErrVoucherSpent] for a voucher with nothing left,
// [ErrMintUnreachable] when the mint does not answer. A voucher worth less
// than amount is drawn down to what it holds, and FundResult.Short is set.
func (c *Client) Fund(ctx context.Context, voucher string, amount uint64) (*FundResult, error) {
	if c.isClosed() {
		return nil, ErrClientClosed
	}
	voucher = strings.TrimSpace(voucher)
	if err := checkVoucher(voucher); err != nil {
		return nil, err
	}
	if err := c.loadKeysets(ctx); err != nil {
		return nil, err
	}
	ks, err := c.issueKeyset()
	if err != nil {
		return nil, err
	}
	c.mintMu.Lock()
	res := &FundResult{Unit: c.unit}
	err = c.fund(ctx, ks, voucher, amount, res)
	c.mintMu.Unlock()
	if err == nil && res.Withdrawn == 0 {
		err = fmt.Errorf("%w: it holds less than %d %s", ErrVoucherSpent, ks.Amounts()[0], c.unit)
	}
	if err != nil {
		if res.Withdrawn == 0 {
			return nil, err
		}
		c.log.Warn("a withdrawal stopped part way", "withdrawn", res.Withdrawn, "err", err)
	}
	if b, berr := c.wallet.Balance(ctx); berr == nil {
		res.Balance = b.Unspent
	}
	c.metrics.observeWallet(ctx, c)
	if err == nil && c.cfg.PoolServers > 0 {
		if perr := c.topUpPools(ctx); perr != nil {
			c.log.Info("topping up coin pools", "err", perr)
		}
	}
	return res, nil
}

// checkVoucher checks the form of a voucher code, as the mint does.
func checkVoucher(v string) error {
	if len(v) < protocol.MinVoucherCode || len(v) > protocol.MaxVoucherCode {
		return fmt.Errorf("%w: a voucher code has %d to %d characters", ErrVoucherUnknown, protocol.MinVoucherCode, protocol.MaxVoucherCode)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return fmt.Errorf("%w: a voucher code is printable ASCII without spaces", ErrVoucherUnknown)
		}
	}
	return nil
}

func (c *Client) fund(ctx context.Context, ks *coin.Keyset, voucher string, amount uint64, res *FundResult) error {
	if amount == 0 {
		return c.drawVoucher(ctx, ks, voucher, 0, res)
	}
	amts, err := denominate(amount, ks, maxFundCoins)
	if err != nil {
		return err
	}
	for len(amts) > 0 {
		batch := amts[:min(len(amts), protocol.MaxWithdrawCoins)]
		err := c.withdraw(ctx, ks, voucher, batch)
		if errors.Is(err, errVoucherShort) {
			res.Short = true
			return c.drawVoucher(ctx, ks, voucher, amount-res.Withdrawn, res)
		}
		if err != nil {
			return err
		}
		amts = amts[len(batch):]
		for _, a := range batch {
			res.Withdrawn += a
		}
		res.Coins += len(batch)
	}
	return nil
}

// drawVoucher withdraws what a voucher holds, up to limit (0: no limit),
// asking for coins of decreasing size: the mint refuses, and charges
// nothing for, a withdrawal above what the voucher holds. For each
// denomination it asks for as many coins as can be left, doubling after
// each success and halving after each refusal.
func (c *Client) drawVoucher(ctx context.Context, ks *coin.Keyset, voucher string, limit uint64, res *FundResult) error {
	amts := ks.Amounts()
	var got uint64
	for i := len(amts) - 1; i >= 0; i-- {
		a := amts[i]
		// room is the most coins of a worth asking for: below the top
		// denomination, the one above was refused (or its coins made up
		// all that could be left), so less than it remains.
		room := func(taken uint64) uint64 {
			r := uint64(protocol.MaxWithdrawCoins)
			if i < len(amts)-1 {
				r = min(r, (amts[i+1]-1)/a-taken)
			}
			if limit != 0 {
				r = min(r, (limit-got)/a)
			}
			return r
		}
		count := uint64(1)
		for taken := uint64(0); ; {
			r := room(taken)
			if r == 0 {
				break
			}
			count = min(count, r)
			batch := make([]uint64, count)
			for k := range batch {
				batch[k] = a
			}
			err := c.withdraw(ctx, ks, voucher, batch)
			if err == nil {
				taken += count
				got += a * count
				res.Withdrawn += a * count
				res.Coins += int(count)
				count *= 2
				continue
			}
			if !errors.Is(err, errVoucherShort) {
				return err
			}
			if count == 1 {
				break
			}
			count /= 2
		}
	}
	return nil
}

// withdraw withdraws one batch of bearer coins, paid by voucher. A
// refusal by the mint abandons the batch (the mint answered nothing); a
// failure to reach it leaves the batch pending, to be finished from the
// mint's stored answers by the next start.
func (c *Client) withdraw(ctx context.Context, ks *coin.Keyset, voucher string, amts []uint64) error {
	wds, err := c.wallet.NextWithdrawals(ctx, ks, amts, [32]byte{})
	if err != nil {
		return err
	}
	chs, err := c.challenges(ctx, ks, wds)
	if err != nil {
		c.abandon(ctx, wds) // the mint saw no challenges
		return err
	}
	var answers []coin.Answer
	for attempt := 0; ; attempt++ {
		answers, err = c.mint.WithdrawFinish(ctx, ks.ID(), []byte(voucher), chs)
		if err == nil || definite(err) || attempt == 2 || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	if err != nil {
		if !definite(err) {
			return c.mintErr(err)
		}
		c.abandon(ctx, wds)
		switch {
		case errors.Is(err, protocol.ErrNotFound):
			return fmt.Errorf("%w: the mint does not know this voucher", ErrVoucherUnknown)
		case errors.Is(err, protocol.ErrInsufficientPayment):
			return errVoucherShort
		}
		return fmt.Errorf("client: the mint refused the withdrawal: %w", err)
	}
	var errs []error
	for i, wd := range wds {
		if _, err := c.wallet.FinishWithdrawal(ctx, wd, answers[i]); err != nil {
			c.metrics.rejected.WithLabelValues("bad_signature").Inc()
			errs = append(errs, err)
			continue
		}
		c.metrics.verified.Inc()
	}
	return errors.Join(errs...)
}

// RecoverCoins recovers the coins of a wallet restored from its phrase:
// it asks the mint's Restore for the rows of the wallet's counters, batch
// by batch until a batch has none, finishes each row as a bearer coin or
// a coin designated to a known server (whichever matches the row's
// challenges), and then swaps the bearer coins: the mint refuses those
// spent before the restore, which are marked spent. It returns the number
// of coins recovered.
func (c *Client) RecoverCoins(ctx context.Context) (int, error) {
	designations := [][32]byte{{}}
	for _, id := range c.serverIDs() {
		designations = append(designations, coin.Designation([]byte(id)))
	}
	c.mintMu.Lock()
	found := 0
	var recovered [][32]byte
	var err error
	for from := uint64(0); ; from += wallet.MaxBatch {
		var nonces [][32]byte
		if nonces, err = c.wallet.Nonces(from, wallet.MaxBatch); err != nil {
			break
		}
		var rows []protocol.RestoredRow
		if rows, err = c.mint.Restore(ctx, nonces); err != nil {
			err = c.mintErr(err)
			break
		}
		if len(rows) == 0 {
			break
		}
		counter := make(map[[32]byte]uint64, len(nonces))
		for i, n := range nonces {
			counter[n] = from + uint64(i)
		}
		for _, row := range rows {
			ks, ok := c.wallet.Keyset(row.KeysetID)
			if !ok {
				continue
			}
			for _, d := range designations {
				wd, werr := c.wallet.RecoverWithdrawal(ctx, counter[row.Nonce], ks, row.Amount, d)
				if werr != nil {
					break
				}
				c0, c1, werr := c.wallet.Challenges(ctx, wd, row.Commitments.R0, row.Commitments.R1)
				if werr == nil && row.Matches(c0, c1) {
					cn, ferr := c.wallet.FinishWithdrawal(ctx, wd, row.Answer)
					if ferr == nil {
						found++
						if d == ([32]byte{}) {
							recovered = append(recovered, cn.Pub)
						}
					}
					break
				}
				c.abandon(ctx, []*wallet.Withdrawal{wd})
			}
		}
	}
	c.mintMu.Unlock()
	if err != nil {
		return found, err
	}
	// Coins spent before the restore are still unspent to the wallet; a
	// swap tells them apart.
	all, cerr := c.wallet.Coins(ctx)
	if cerr != nil {
		return found, cerr
	}
	unspent := make(map[[32]byte]bool)
	for _, ci := range all {
		if ci.State == wallet.Unspent {
			unspent[ci.Coin.Pub] = true
		}
	}
	recovered = slices.DeleteFunc(recovered, func(p [32]byte) bool { return !unspent[p] })
	return found, c.swapAll(ctx, recovered)
}
