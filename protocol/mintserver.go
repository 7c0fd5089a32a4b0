package protocol

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// MintService serves the mint protocol, [MintID]: Keysets, WithdrawBegin,
// WithdrawFinish, Swap, Deposit, Balance, Payout and Restore (see
// SPEC.md §9). It keeps no durable state of its own: keysets are in its
// [MintKeyring], everything durable in its [MintStore], and money moves
// through its [Funding]; in memory it keeps only the quarantine of
// depositors that sent spends failing verification. It is safe for
// concurrent use.
//
// Admin calls (vouchers, keyset rotation and revocation) are not on the
// protocol: the mint's node makes them on the keyring, the store and the
// funding plugin directly.
type MintService struct {
	self    peer.ID
	keys    *MintKeyring
	store   MintStore
	funding Funding
	now     func() time.Time
	quar    depositQuarantine
}

// Batches of Deposit and Swap verification. Spends are verified in
// batches of DepositBatch, in order; when a batch fails a signature or
// key check (its spends are then checked one by one, several times the
// cost of the batch), the spends after it are not looked at
// (DEPOSIT_NOT_TAKEN: deposit them again), so that a forged Deposit
// costs the mint at most a good one of the same size plus DepositBatch
// single checks. A depositor whose spends failed is quarantined, as a
// [BatchVerifier] quarantines a peer ([DefaultQuarantine], doubling up
// to [DefaultMaxQuarantine]): meanwhile its spends are verified in
// batches of QuarantinedDepositBatch. (Peer IDs are free, so the bound
// per call, not the quarantine, is the defence; the quarantine makes a
// repeat offender's calls cheaper still.)
const (
	DepositBatch            = 64
	QuarantinedDepositBatch = 8
)

// errNotTaken marks a spend a Deposit or Swap did not look at.
var errNotTaken = errors.New("protocol: spend not looked at")

// MintOption configures [NewMintService].
type MintOption func(*MintService)

// WithMintClock sets the clock against which keyset windows are checked.
func WithMintClock(now func() time.Time) MintOption {
	return func(m *MintService) { m.now = now }
}

// NewMintService returns the mint service of the libp2p peer self: Swap
// inputs must be spent for self. Default clock: time.Now.
func NewMintService(self peer.ID, keys *MintKeyring, store MintStore, funding Funding, opts ...MintOption) *MintService {
	m := &MintService{self: self, keys: keys, store: store, funding: funding, now: time.Now,
		quar: depositQuarantine{m: make(map[peer.ID]*quarantine)}}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Register serves m on h for [MintID], with the stream options given. h
// must be the peer m was made for.
func (m *MintService) Register(h host.Host, opts ...HandlerOption) error {
	if h.ID() != m.self {
		return fmt.Errorf("protocol: mint service of %s registered on host %s", m.self, h.ID())
	}
	h.SetStreamHandler(libp2pprotocol.ID(MintID), NewStreamHandler(MintID, m.Handle, opts...))
	return nil
}

// Handle is the [Handler] of the mint protocol: it answers one request
// from remote.
func (m *MintService) Handle(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
	mr := new(pb.MintRequest)
	if err := proto.Unmarshal(req.Body, mr); err != nil {
		return nil, mintBad("body does not decode")
	}
	if len(mr.RequestId) != RequestIDSize {
		return nil, mintBad("request ID is %d bytes, want %d", len(mr.RequestId), RequestIDSize)
	}
	switch mr.Op.(type) {
	case *pb.MintRequest_Swap, *pb.MintRequest_Recoup:
	default:
		if len(req.Spends) != 0 {
			return nil, mintBad("only Swap and Recoup take spends")
		}
	}
	var out pb.MintResponse
	var err error
	switch op := mr.Op.(type) {
	case *pb.MintRequest_Keysets:
		out.Op = &pb.MintResponse_Keysets{Keysets: m.keysets()}
	case *pb.MintRequest_WithdrawBegin:
		var r *pb.WithdrawBeginResponse
		r, err = m.withdrawBegin(op.WithdrawBegin)
		out.Op = &pb.MintResponse_WithdrawBegin{WithdrawBegin: r}
	case *pb.MintRequest_WithdrawFinish:
		var r *pb.WithdrawFinishResponse
		r, err = m.withdrawFinish(ctx, op.WithdrawFinish)
		out.Op = &pb.MintResponse_WithdrawFinish{WithdrawFinish: r}
	case *pb.MintRequest_Swap:
		var r *pb.SwapResponse
		r, err = m.swap(ctx, remote, mr, op.Swap, req)
		out.Op = &pb.MintResponse_Swap{Swap: r}
	case *pb.MintRequest_Deposit:
		var r *pb.DepositResponse
		r, err = m.deposit(ctx, remote, op.Deposit)
		out.Op = &pb.MintResponse_Deposit{Deposit: r}
	case *pb.MintRequest_Balance:
		var r *pb.BalanceResponse
		r, err = m.balance(ctx, remote)
		out.Op = &pb.MintResponse_Balance{Balance: r}
	case *pb.MintRequest_Payout:
		var r *pb.PayoutResponse
		r, err = m.payout(ctx, remote, mr, op.Payout, req.Body)
		out.Op = &pb.MintResponse_Payout{Payout: r}
	case *pb.MintRequest_Restore:
		var r *pb.RestoreResponse
		r, err = m.restore(ctx, op.Restore)
		out.Op = &pb.MintResponse_Restore{Restore: r}
	case *pb.MintRequest_Recoup:
		var r *pb.RecoupResponse
		r, err = m.recoup(ctx, remote, op.Recoup, req)
		out.Op = &pb.MintResponse_Recoup{Recoup: r}
	default:
		return nil, mintBad("no operation")
	}
	if err != nil {
		return nil, err
	}
	body, err := proto.Marshal(&out)
	if err != nil {
		return nil, fmt.Errorf("protocol: encoding mint response: %w", err)
	}
	return &pb.Response{Body: body}, nil
}

// mintBad returns a BAD_REQUEST answer with a message.
func mintBad(format string, args ...any) error {
	return &Error{Code: pb.Code_BAD_REQUEST, Message: fmt.Sprintf(format, args...)}
}

func mintBytes32(b []byte, what string) ([32]byte, error) {
	if len(b) != 32 {
		return [32]byte{}, mintBad("%s is %d bytes, want 32", what, len(b))
	}
	return [32]byte(b), nil
}

func (m *MintService) keysets() *pb.KeysetsResponse {
	out := new(pb.KeysetsResponse)
	for _, p := range m.keys.Keysets() {
		out.Keysets = append(out.Keysets, p.Keyset.Bytes())
		if p.Revoked {
			id := p.Keyset.ID()
			out.Revoked = append(out.Revoked, id[:])
		}
	}
	return out
}

// issuing returns the secret of the keyset named by idb if it may issue
// now: known, not revoked and inside its issue window.
func (m *MintService) issuing(idb []byte) (*coin.KeysetSecret, error) {
	id, err := mintBytes32(idb, "keyset ID")
	if err != nil {
		return nil, err
	}
	sec, err := m.keys.issuer(id)
	if err != nil {
		return nil, err
	}
	if !sec.Keyset().Open(coin.WindowIssue, m.now()) {
		return nil, &Error{Code: pb.Code_EXPIRED_KEYSET, Message: "keyset outside its issue window"}
	}
	return sec, nil
}

// mintSigners caches the signers of one keyset for one call.
type mintSigners struct {
	sec *coin.KeysetSecret
	m   map[uint64]*coin.Signer
}

func (s *mintSigners) get(amount uint64) (*coin.Signer, error) {
	if sg, ok := s.m[amount]; ok {
		return sg, nil
	}
	sg, err := s.sec.Signer(amount)
	if err != nil {
		return nil, mintBad("keyset has no denomination %d", amount)
	}
	if s.m == nil {
		s.m = make(map[uint64]*coin.Signer)
	}
	s.m[amount] = sg
	return sg, nil
}

func (m *MintService) withdrawBegin(op *pb.WithdrawBegin) (*pb.WithdrawBeginResponse, error) {
	sec, err := m.issuing(op.KeysetId)
	if err != nil {
		return nil, err
	}
	if m.keys.Retired(sec.Keyset().ID()) {
		// Round two and Swap outputs may still replay stored rows of
		// a retired keyset; the store refuses new ones.
		return nil, ErrKeysetRetired
	}
	if n := len(op.Coins); n == 0 || n > MaxWithdrawCoins {
		return nil, mintBad("%d coins, want 1 to %d", n, MaxWithdrawCoins)
	}
	signers := mintSigners{sec: sec}
	out := &pb.WithdrawBeginResponse{Coins: make([]*pb.Commitments, len(op.Coins))}
	for i, c := range op.Coins {
		sg, err := signers.get(c.Amount)
		if err != nil {
			return nil, err
		}
		nonce, err := mintBytes32(c.Nonce, "nonce")
		if err != nil {
			return nil, err
		}
		r0, r1 := sg.Begin(nonce)
		out.Coins[i] = &pb.Commitments{R0: r0[:], R1: r1[:]}
	}
	return out, nil
}

// mintOutputs checks the second-round coins of a WithdrawFinish or Swap
// and computes their rows. The rows hold answers that must not leave the
// mint until a store has committed them: callers pass them to the store
// and release only what it returns (see [mintRelease]).
func mintOutputs(now time.Time, sec *coin.KeysetSecret, coins []*pb.BlindChallenge, max int) (rows []IssueRow, chs []BlindChallenge, total uint64, err error) {
	if n := len(coins); n == 0 || n > max {
		return nil, nil, 0, mintBad("%d coins, want 1 to %d", n, max)
	}
	signers := mintSigners{sec: sec}
	id := sec.Keyset().ID()
	seen := make(map[[64]byte]bool, len(coins))
	rows = make([]IssueRow, len(coins))
	chs = make([]BlindChallenge, len(coins))
	for i, c := range coins {
		sg, err := signers.get(c.Amount)
		if err != nil {
			return nil, nil, 0, err
		}
		ch := BlindChallenge{Amount: c.Amount}
		if ch.Nonce, err = mintBytes32(c.Nonce, "nonce"); err != nil {
			return nil, nil, 0, err
		}
		if ch.C0, err = mintBytes32(c.C0, "c0"); err != nil {
			return nil, nil, 0, err
		}
		if ch.C1, err = mintBytes32(c.C1, "c1"); err != nil {
			return nil, nil, 0, err
		}
		var k [64]byte
		key := sg.Key()
		copy(k[:32], key[:])
		copy(k[32:], ch.Nonce[:])
		if seen[k] {
			return nil, nil, 0, mintBad("coin %d repeats a nonce of the call", i)
		}
		seen[k] = true
		var carry uint64
		if total, carry = bits.Add64(total, c.Amount, 0); carry != 0 {
			return nil, nil, 0, mintBad("total amount overflows")
		}
		row, err := sg.Finish(now, ch.Nonce, ch.C0, ch.C1)
		switch {
		case errors.Is(err, coin.ErrOutsideWindow):
			return nil, nil, 0, &Error{Code: pb.Code_EXPIRED_KEYSET, Message: "keyset outside its issue window"}
		case err != nil:
			return nil, nil, 0, mintBad("coin %d: challenge is not a canonical scalar", i)
		}
		rows[i] = IssueRow{Row: row, KeysetID: id, Amount: c.Amount}
		chs[i] = ch
	}
	return rows, chs, total, nil
}

// mintRelease builds the answers of a call from the rows a store returned,
// checking that each is the row of its coin and was made for its
// challenges. It never looks at the rows the mint computed: a store that
// keeps an older row answers with it, and an answer for other challenges
// is never released, whatever the store returns.
func mintRelease(chs []BlindChallenge, keys [][32]byte, stored []coin.Row) ([]*pb.BlindAnswer, error) {
	if len(stored) != len(chs) {
		return nil, fmt.Errorf("protocol: mint store returned %d rows for %d coins", len(stored), len(chs))
	}
	out := make([]*pb.BlindAnswer, len(chs))
	for i := range chs {
		r := &stored[i]
		if r.Key != keys[i] || r.Nonce != chs[i].Nonce || !r.Matches(chs[i].C0, chs[i].C1) || r.B > 1 {
			return nil, fmt.Errorf("protocol: mint store returned another row for coin %d", i)
		}
		s := r.S
		out[i] = &pb.BlindAnswer{B: uint32(r.B), S: s[:]}
	}
	return out, nil
}

func mintRowKeys(rows []IssueRow) [][32]byte {
	keys := make([][32]byte, len(rows))
	for i := range rows {
		keys[i] = rows[i].Key
	}
	return keys
}

func (m *MintService) withdrawFinish(ctx context.Context, op *pb.WithdrawFinish) (*pb.WithdrawFinishResponse, error) {
	sec, err := m.issuing(op.KeysetId)
	if err != nil {
		return nil, err
	}
	if n := len(op.Funding); n == 0 || n > MaxFundingSize {
		return nil, mintBad("funding proof is %d bytes, want 1 to %d", n, MaxFundingSize)
	}
	rows, chs, _, err := mintOutputs(m.now(), sec, op.Coins, MaxWithdrawCoins)
	if err != nil {
		return nil, err
	}
	keys := mintRowKeys(rows)
	acct, err := m.funding.Account(ctx, op.Funding)
	if err != nil {
		return nil, err
	}
	stored, err := m.store.CommitIssue(ctx, acct, sec.Keyset().Unit, rows)
	if err != nil {
		return nil, err
	}
	answers, err := mintRelease(chs, keys, stored)
	if err != nil {
		return nil, err
	}
	return &pb.WithdrawFinishResponse{Coins: answers}, nil
}

// mintDepositStatus classifies a verification failure.
func mintDepositStatus(err error) pb.DepositStatus {
	switch {
	case errors.Is(err, errNotTaken):
		return pb.DepositStatus_DEPOSIT_NOT_TAKEN
	case errors.Is(err, ErrRevokedKeyset):
		return pb.DepositStatus_DEPOSIT_REVOKED
	case errors.Is(err, coin.ErrOutsideWindow):
		return pb.DepositStatus_DEPOSIT_EXPIRED
	}
	return pb.DepositStatus_DEPOSIT_INVALID
}

// verifySpends parses and verifies spends sent by from for server with
// the deposit window (a coin designated to another server fails), in
// batches (see [DepositBatch]); it returns the parsed spends and, per
// spend, nil or the reason it failed ([errNotTaken] for one not looked
// at).
func (m *MintService) verifySpends(from, server peer.ID, raw [][]byte, digests [][DigestSize]byte) ([]*coin.Spend, []error) {
	return m.verifySpendsWith(from, coin.Verifier{Keysets: m.keys, Server: []byte(server), Window: coin.WindowDeposit}, raw, digests)
}

// verifySpendsWith is verifySpends under verifier v.
func (m *MintService) verifySpendsWith(from peer.ID, v coin.Verifier, raw [][]byte, digests [][DigestSize]byte) ([]*coin.Spend, []error) {
	spends := make([]*coin.Spend, len(raw))
	errs := make([]error, len(raw))
	var items []coin.Item
	var idx []int
	for i, b := range raw {
		s, err := coin.ParseSpend(b)
		if err != nil {
			errs[i] = err
			continue
		}
		spends[i] = s
		items = append(items, coin.Item{Spend: s, Digest: digests[i]})
		idx = append(idx, i)
	}
	if len(items) == 0 {
		return spends, errs
	}
	size := DepositBatch
	if m.quar.in(from, time.Now()) {
		size = QuarantinedDepositBatch
	}
	now := m.now()
	for lo := 0; lo < len(items); lo += size {
		hi := min(lo+size, len(items))
		err := v.VerifyBatch(items[lo:hi], now)
		if err == nil {
			continue
		}
		be, ok := errors.AsType[*coin.BatchError](err)
		for j, i := range idx[lo:hi] {
			switch {
			case !ok:
				errs[i] = err
			case be.Errs[j] != nil:
				errs[i] = be.Errs[j]
			}
		}
		if ok && offence(be.Errs) {
			m.quar.offend(from, time.Now())
			for _, i := range idx[hi:] {
				errs[i] = errNotTaken
			}
			break
		}
	}
	return spends, errs
}

// depositQuarantine remembers the depositors whose spends failed a
// signature or key check, for a period that doubles on each new offence
// (as a [BatchVerifier]'s quarantine does). It runs on the real clock.
type depositQuarantine struct {
	mu sync.Mutex
	m  map[peer.ID]*quarantine
}

func (q *depositQuarantine) in(p peer.ID, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.m[p]
	return e != nil && now.Before(e.until)
}

func (q *depositQuarantine) offend(p peer.ID, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.m[p]
	if e == nil {
		if len(q.m) >= maxQuarantined {
			for k, e := range q.m {
				if !now.Before(e.until.Add(2 * e.period)) {
					delete(q.m, k)
				}
			}
			for k := range q.m { // still full of recent offenders: forget some at random
				if len(q.m) < maxQuarantined {
					break
				}
				delete(q.m, k)
			}
		}
		e = &quarantine{}
		q.m[p] = e
	}
	if e.period > 0 && now.Before(e.until.Add(2*e.period)) {
		e.period = min(2*e.period, DefaultMaxQuarantine)
	} else {
		e.period = DefaultQuarantine
	}
	e.until = now.Add(e.period)
}

// spendRecord makes the spent-set record of a verified spend.
func (m *MintService) spendRecord(s *coin.Spend, raw []byte, server peer.ID, digest [DigestSize]byte) (SpendRecord, error) {
	ks, err := m.keys.Lookup(s.KeysetID)
	if err != nil {
		return SpendRecord{}, err
	}
	return SpendRecord{
		Pub: s.Pub, KeysetID: s.KeysetID, Unit: ks.Unit, Amount: s.Amount,
		Server: server, Digest: digest, Spend: append([]byte(nil), raw...),
	}, nil
}

func mintEvidence(r *SpendRecord) *pb.DoubleSpend {
	return &pb.DoubleSpend{
		Server: []byte(r.Server),
		Coin:   &pb.SpentCoin{Spend: append([]byte(nil), r.Spend...), RequestDigest: append([]byte(nil), r.Digest[:]...)},
	}
}

func (m *MintService) swap(ctx context.Context, remote peer.ID, mr *pb.MintRequest, op *pb.Swap, req *pb.Request) (*pb.SwapResponse, error) {
	sec, err := m.issuing(op.KeysetId)
	if err != nil {
		return nil, err
	}
	unit := sec.Keyset().Unit
	rows, chs, totalOut, err := mintOutputs(m.now(), sec, op.Coins, MaxSwapOutputs)
	if err != nil {
		return nil, err
	}
	keys := mintRowKeys(rows)
	n := len(req.Spends)
	if n == 0 || n > MaxSwapInputs {
		return nil, mintBad("%d input coins, want 1 to %d", n, MaxSwapInputs)
	}
	digest := RequestDigest(MintID, req.Body)
	digests := make([][DigestSize]byte, n)
	for i := range digests {
		digests[i] = digest
	}
	// Only bearer coins: a coin designated to a server is that server's
	// to deposit, and fails here as designated to another peer (see
	// SPEC.md §9, Swap). A wallet refreshes its bearer coins reserved at
	// a server that never answered by swapping them.
	spends, errs := m.verifySpends(remote, m.self, req.Spends, digests)
	seen := make(map[[32]byte]bool, n)
	for _, s := range spends {
		if s != nil {
			if seen[s.Pub] {
				return nil, mintBad("a coin is spent twice in one swap")
			}
			seen[s.Pub] = true
		}
	}
	inputs := make([]*pb.DepositResult, n)
	refused := false
	for i, err := range errs {
		if err != nil {
			inputs[i] = &pb.DepositResult{Status: mintDepositStatus(err)}
			refused = true
		}
	}
	notTaken := func() {
		for i := range inputs {
			if inputs[i] == nil {
				inputs[i] = &pb.DepositResult{Status: pb.DepositStatus_DEPOSIT_NOT_TAKEN}
			}
		}
	}
	if refused {
		notTaken()
		return &pb.SwapResponse{Inputs: inputs}, nil
	}
	records := make([]SpendRecord, n)
	var totalIn uint64
	for i, s := range spends {
		rec, err := m.spendRecord(s, req.Spends[i], m.self, digest)
		if err != nil {
			inputs[i] = &pb.DepositResult{Status: mintDepositStatus(err)}
			notTaken()
			return &pb.SwapResponse{Inputs: inputs}, nil
		}
		if rec.Unit != unit {
			return nil, mintBad("input %d is in %q, the new coins in %q", i, rec.Unit, unit)
		}
		var carry uint64
		if totalIn, carry = bits.Add64(totalIn, rec.Amount, 0); carry != 0 {
			return nil, mintBad("total input overflows")
		}
		records[i] = rec
	}
	if totalIn != totalOut {
		return nil, mintBad("inputs total %d, new coins %d", totalIn, totalOut)
	}
	c := SwapCommit{RequestID: [RequestIDSize]byte(mr.RequestId), Digest: digest, Inputs: records, Outputs: rows}
	res, err := m.store.CommitSwap(ctx, c)
	if err != nil {
		return nil, err
	}
	if res.Rows == nil {
		if len(res.Conflicts) != n {
			return nil, fmt.Errorf("protocol: mint store returned %d conflicts for %d inputs", len(res.Conflicts), n)
		}
		for i, r := range res.Conflicts {
			if r != nil {
				inputs[i] = &pb.DepositResult{Status: pb.DepositStatus_DEPOSIT_DOUBLE_SPENT, Conflict: mintEvidence(r)}
			}
		}
		notTaken()
		return &pb.SwapResponse{Inputs: inputs}, nil
	}
	answers, err := mintRelease(chs, keys, res.Rows)
	if err != nil {
		return nil, err
	}
	for i := range inputs {
		inputs[i] = &pb.DepositResult{Status: pb.DepositStatus_DEPOSIT_CREDITED}
	}
	return &pb.SwapResponse{Coins: answers, Inputs: inputs}, nil
}

func (m *MintService) deposit(ctx context.Context, server peer.ID, op *pb.Deposit) (*pb.DepositResponse, error) {
	n := len(op.Coins)
	if n == 0 || n > MaxDepositBatch {
		return nil, mintBad("%d coins, want 1 to %d", n, MaxDepositBatch)
	}
	if server.Validate() != nil || len(server) > coin.MaxServerIDLen {
		return nil, mintBad("caller's peer ID cannot be paid")
	}
	raw := make([][]byte, n)
	digests := make([][DigestSize]byte, n)
	bad := make([]bool, n)
	for i, c := range op.Coins {
		if len(c.RequestDigest) != DigestSize {
			bad[i] = true
			continue
		}
		raw[i] = c.Spend
		digests[i] = [DigestSize]byte(c.RequestDigest)
	}
	spends, errs := m.verifySpends(server, server, raw, digests)
	results := make([]*pb.DepositResult, n)
	var records []SpendRecord
	var idx []int
	for i, s := range spends {
		switch {
		case bad[i]:
			results[i] = &pb.DepositResult{Status: pb.DepositStatus_DEPOSIT_INVALID}
		case errs[i] != nil:
			results[i] = &pb.DepositResult{Status: mintDepositStatus(errs[i])}
		default:
			rec, err := m.spendRecord(s, raw[i], server, digests[i])
			if err != nil {
				results[i] = &pb.DepositResult{Status: mintDepositStatus(err)}
				continue
			}
			records = append(records, rec)
			idx = append(idx, i)
		}
	}
	if len(records) > 0 {
		outs, err := m.store.CreditDeposits(ctx, server, records)
		if err != nil {
			return nil, err
		}
		if err := mintStoreOutcomes(results, idx, outs, false); err != nil {
			return nil, err
		}
	}
	return &pb.DepositResponse{Results: results}, nil
}

// mintStoreOutcomes puts the store's outcomes outs, one per coin it was
// given, at positions idx of results, with the evidence of double spends.
// It fails on an outcome a store must not return: a count that differs, a
// double spend without evidence, or another status than credited, already
// credited, double spent, or (if invalid is set: Recoup) invalid.
func mintStoreOutcomes(results []*pb.DepositResult, idx []int, outs []DepositOutcome, invalid bool) error {
	if len(outs) != len(idx) {
		return fmt.Errorf("protocol: mint store returned %d outcomes for %d coins", len(outs), len(idx))
	}
	for j, i := range idx {
		r := &pb.DepositResult{Status: outs[j].Status}
		switch st := outs[j].Status; {
		case st == pb.DepositStatus_DEPOSIT_CREDITED, st == pb.DepositStatus_DEPOSIT_ALREADY_CREDITED:
		case st == pb.DepositStatus_DEPOSIT_INVALID && invalid:
		case st == pb.DepositStatus_DEPOSIT_DOUBLE_SPENT:
			if outs[j].Conflict == nil {
				return fmt.Errorf("protocol: mint store returned a double spend without evidence")
			}
			r.Conflict = mintEvidence(outs[j].Conflict)
		default:
			return fmt.Errorf("protocol: mint store returned status %v", st)
		}
		results[i] = r
	}
	return nil
}

func (m *MintService) balance(ctx context.Context, server peer.ID) (*pb.BalanceResponse, error) {
	bals, err := m.store.Balance(ctx, server)
	if err != nil {
		return nil, err
	}
	out := new(pb.BalanceResponse)
	for _, b := range bals {
		out.Balances = append(out.Balances, &pb.UnitAmount{Unit: b.Unit, Amount: b.Amount})
	}
	return out, nil
}

func (m *MintService) payout(ctx context.Context, server peer.ID, mr *pb.MintRequest, op *pb.Payout, body []byte) (*pb.PayoutResponse, error) {
	if op.Amount == nil || op.Amount.Amount == 0 {
		return nil, mintBad("no amount")
	}
	if err := checkUnit(op.Amount.Unit); err != nil {
		return nil, mintBad("bad unit")
	}
	if len(op.Destination) > MaxPayoutDestination {
		return nil, mintBad("destination over %d bytes", MaxPayoutDestination)
	}
	o := PayoutOrder{
		Server:      server,
		RequestID:   [RequestIDSize]byte(mr.RequestId),
		Digest:      RequestDigest(MintID, body),
		Unit:        op.Amount.Unit,
		Amount:      op.Amount.Amount,
		Destination: append([]byte(nil), op.Destination...),
	}
	rec, err := m.store.BeginPayout(ctx, o)
	if err != nil {
		return nil, err
	}
	if rec.Digest != o.Digest {
		return nil, ErrMintRequestReused
	}
	if rec, err = m.settle(ctx, rec); err != nil {
		return nil, err
	}
	if rec.State == PayoutRefused {
		return nil, ErrPayoutRefused
	}
	bals, err := m.store.Balance(ctx, server)
	if err != nil {
		return nil, err
	}
	out := &pb.PayoutResponse{Receipt: rec.Receipt}
	for _, b := range bals {
		if b.Unit == o.Unit {
			out.Remaining = b.Amount
		}
	}
	return out, nil
}

// settle has a pending payout paid by the funding plugin and records the
// result.
func (m *MintService) settle(ctx context.Context, rec PayoutRecord) (PayoutRecord, error) {
	if rec.State != PayoutPending {
		return rec, nil
	}
	receipt, err := m.funding.Pay(ctx, rec.PayoutOrder)
	refused := errors.Is(err, ErrPayoutRefused)
	if err != nil && !refused {
		return rec, err
	}
	if len(receipt) > MaxPayoutReceipt {
		return rec, fmt.Errorf("protocol: payout receipt of %d bytes", len(receipt))
	}
	return m.store.FinishPayout(ctx, rec.Server, rec.RequestID, receipt, refused)
}

// ResumePayouts settles the payouts left pending by an earlier failure of
// the funding plugin or a crash. A mint calls it when it starts, and may
// call it from time to time. It returns the first error after trying
// every payout.
func (m *MintService) ResumePayouts(ctx context.Context) error {
	pending, err := m.store.PendingPayouts(ctx)
	if err != nil {
		return err
	}
	var first error
	for _, rec := range pending {
		if _, err := m.settle(ctx, rec); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (m *MintService) restore(ctx context.Context, op *pb.Restore) (*pb.RestoreResponse, error) {
	n := len(op.Nonces)
	if n == 0 || n > MaxRestoreNonces {
		return nil, mintBad("%d nonces, want 1 to %d", n, MaxRestoreNonces)
	}
	nonces := make([][32]byte, 0, n)
	seen := make(map[[32]byte]bool, n)
	for _, b := range op.Nonces {
		nonce, err := mintBytes32(b, "nonce")
		if err != nil {
			return nil, err
		}
		if !seen[nonce] {
			seen[nonce] = true
			nonces = append(nonces, nonce)
		}
	}
	rows, err := m.store.Rows(ctx, nonces, MaxRestoreRows)
	if err != nil {
		return nil, err
	}
	out := new(pb.RestoreResponse)
	for _, r := range rows[:min(len(rows), MaxRestoreRows)] {
		sec, ok := m.keys.secret(r.KeysetID)
		if !ok {
			continue // keyset dropped: its coins are worthless
		}
		sg, err := sec.Signer(r.Amount)
		if err != nil || sg.Key() != r.Key || r.B > 1 {
			return nil, fmt.Errorf("protocol: mint store row does not match its keyset")
		}
		// The first round is stateless and may be recomputed; the answer is
		// only ever replayed.
		r0, r1 := sg.Begin(r.Nonce)
		s := r.S
		out.Coins = append(out.Coins, &pb.RestoredCoin{
			Nonce:         append([]byte(nil), r.Nonce[:]...),
			KeysetId:      append([]byte(nil), r.KeysetID[:]...),
			Amount:        r.Amount,
			R0:            r0[:],
			R1:            r1[:],
			ChallengeHash: append([]byte(nil), r.ChallengeHash[:]...),
			Answer:        &pb.BlindAnswer{B: uint32(r.B), S: s[:]},
		})
	}
	return out, nil
}
