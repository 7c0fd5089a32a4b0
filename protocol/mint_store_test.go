package protocol_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// memRow makes a row under key for nonce with challenge hash ch.
func memRow(key, nonce byte, ch byte, amount uint64) protocol.IssueRow {
	return protocol.IssueRow{
		Row:    coin.Row{Key: [32]byte{key}, Nonce: [32]byte{nonce}, ChallengeHash: [32]byte{ch}, S: [32]byte{ch, 's'}},
		Amount: amount,
	}
}

func openFunding(t *testing.T, s *protocol.MemMintStore, id byte, value uint64) [32]byte {
	t.Helper()
	acct := [32]byte{id}
	if err := s.OpenFunding(context.Background(), acct, "msat", value); err != nil {
		t.Fatal(err)
	}
	return acct
}

// TestMemCommitIssueConcurrent races many commits of one (key, nonce) with
// different challenges: exactly one wins, and the funding is charged once.
func TestMemCommitIssueConcurrent(t *testing.T) {
	ctx := context.Background()
	s := protocol.NewMemMintStore()
	acct := openFunding(t, s, 1, 1000)
	const n = 256
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	stored := make([][]coin.Row, n)
	for i := range n {
		wg.Go(func() {
			<-start
			stored[i], errs[i] = s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{memRow(1, 1, byte(i), 8)})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("calls %d and %d both committed", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, protocol.ErrNonceReused):
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no call committed")
	}
	if stored[winner][0].ChallengeHash != ([32]byte{byte(winner)}) {
		t.Fatal("the winner got another row")
	}
	if a, _ := s.FundingAccount(ctx, acct); a.Remaining != 1000-8 {
		t.Fatalf("charged %d", 1000-a.Remaining)
	}
	// The winner's retry is answered from its row and charged nothing.
	again, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{memRow(1, 1, byte(winner), 8)})
	if err != nil || again[0] != stored[winner][0] {
		t.Fatalf("retry: %v", err)
	}
	if a, _ := s.FundingAccount(ctx, acct); a.Remaining != 1000-8 {
		t.Fatalf("retry charged %d", 1000-8-a.Remaining)
	}
}

// TestMemCommitIssueAtomic checks that a refused commit changes nothing.
func TestMemCommitIssueAtomic(t *testing.T) {
	ctx := context.Background()
	s := protocol.NewMemMintStore()
	acct := openFunding(t, s, 1, 10)
	if _, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{memRow(1, 1, 1, 2)}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		acct [32]byte
		unit string
		rows []protocol.IssueRow
		want error
	}{
		{"reused nonce", acct, "msat", []protocol.IssueRow{memRow(1, 2, 1, 1), memRow(1, 1, 9, 1)}, protocol.ErrNonceReused},
		{"repeated in one call", acct, "msat", []protocol.IssueRow{memRow(1, 3, 1, 1), memRow(1, 3, 2, 1)}, protocol.ErrNonceReused},
		{"insufficient", acct, "msat", []protocol.IssueRow{memRow(1, 4, 1, 8), memRow(1, 5, 1, 1)}, protocol.ErrInsufficientFunding},
		{"unknown funding", [32]byte{9}, "msat", []protocol.IssueRow{memRow(1, 6, 1, 1)}, protocol.ErrUnknownFunding},
		{"other unit", acct, "sat", []protocol.IssueRow{memRow(1, 7, 1, 1)}, protocol.ErrFundingUnit},
	} {
		if _, err := s.CommitIssue(ctx, tt.acct, tt.unit, tt.rows); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	rows, err := s.Rows(ctx, [][32]byte{{1}, {2}, {3}, {4}, {5}, {6}, {7}}, 100)
	if err != nil || len(rows) != 1 {
		t.Fatalf("%d rows stored (%v)", len(rows), err)
	}
	if a, _ := s.FundingAccount(ctx, acct); a.Remaining != 8 {
		t.Fatalf("remaining %d", a.Remaining)
	}
	// Spending it all, then nothing is left.
	if _, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{memRow(1, 8, 1, 8)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{memRow(1, 9, 1, 1)}); !errors.Is(err, protocol.ErrFundingSpent) {
		t.Fatalf("spent: %v", err)
	}
	if err := s.OpenFunding(ctx, acct, "msat", 11); !errors.Is(err, protocol.ErrMintRequestReused) {
		t.Fatalf("reopened: %v", err)
	}
}

func memSpend(pub byte, server peer.ID, digest byte, amount uint64) protocol.SpendRecord {
	return protocol.SpendRecord{Pub: [32]byte{pub}, Unit: "msat", Amount: amount, Server: server,
		Digest: [32]byte{digest}, Spend: bytes.Repeat([]byte{pub}, coin.SpendSize)}
}

// TestMemCommitSwapAtomic checks that a swap refused for one input spends
// none and issues nothing, and that a retry replays.
func TestMemCommitSwapAtomic(t *testing.T) {
	ctx := context.Background()
	s := protocol.NewMemMintStore()
	mint, server := peer.ID("mint"), peer.ID("server")
	if _, err := s.CreditDeposits(ctx, server, []protocol.SpendRecord{memSpend(2, server, 1, 4)}); err != nil {
		t.Fatal(err)
	}
	refused := protocol.SwapCommit{RequestID: [16]byte{1}, Digest: [32]byte{1},
		Inputs:  []protocol.SpendRecord{memSpend(1, mint, 1, 4), memSpend(2, mint, 1, 4)},
		Outputs: []protocol.IssueRow{memRow(1, 1, 1, 8)}}
	out, err := s.CommitSwap(ctx, refused)
	if err != nil || out.Rows != nil || out.Conflicts[0] != nil || out.Conflicts[1] == nil || out.Conflicts[1].Server != server {
		t.Fatalf("refused swap: %+v, %v", out, err)
	}
	if rows, _ := s.Rows(ctx, [][32]byte{{1}}, 10); len(rows) != 0 {
		t.Fatal("a refused swap stored a row")
	}
	ok := protocol.SwapCommit{RequestID: [16]byte{2}, Digest: [32]byte{2},
		Inputs:  []protocol.SpendRecord{memSpend(1, mint, 2, 4), memSpend(3, mint, 2, 4)},
		Outputs: []protocol.IssueRow{memRow(1, 1, 1, 8)}}
	if out, err := s.CommitSwap(ctx, ok); err != nil || len(out.Rows) != 1 {
		t.Fatalf("swap: %+v, %v", out, err)
	}
	if out, err := s.CommitSwap(ctx, ok); err != nil || len(out.Rows) != 1 || out.Rows[0] != ok.Outputs[0].Row {
		t.Fatalf("retry: %+v, %v", out, err)
	}
	other := ok
	other.Inputs = []protocol.SpendRecord{memSpend(1, mint, 2, 4), memSpend(4, mint, 2, 4)}
	if _, err := s.CommitSwap(ctx, other); !errors.Is(err, protocol.ErrMintRequestReused) {
		t.Fatalf("retry with other inputs: %v", err)
	}
	reused := protocol.SwapCommit{RequestID: [16]byte{3}, Digest: [32]byte{3},
		Inputs: []protocol.SpendRecord{memSpend(5, mint, 3, 8)}, Outputs: []protocol.IssueRow{memRow(1, 1, 1, 8)}}
	if _, err := s.CommitSwap(ctx, reused); !errors.Is(err, protocol.ErrNonceReused) {
		t.Fatalf("reused output nonce: %v", err)
	}
	if rs, err := s.CreditDeposits(ctx, server, []protocol.SpendRecord{memSpend(5, server, 1, 8)}); err != nil || rs[0].Status != pb.DepositStatus_DEPOSIT_CREDITED {
		t.Fatalf("an input of a refused swap was spent: %+v, %v", rs, err)
	}
}

// flakyFunding is voucher funding whose payouts fail while down, and are
// refused for the destination "refuse".
type flakyFunding struct {
	*protocol.VoucherFunding
	mu    sync.Mutex
	down  bool
	calls int
}

func (f *flakyFunding) Pay(ctx context.Context, o protocol.PayoutOrder) ([]byte, error) {
	f.mu.Lock()
	f.calls++
	down := f.down
	f.mu.Unlock()
	if string(o.Destination) == "refuse" {
		return nil, protocol.ErrPayoutRefused
	}
	if down {
		return nil, errors.New("rail down")
	}
	return f.VoucherFunding.Pay(ctx, o)
}

// TestMintPayoutSettles runs payouts through the handler with a funding
// plugin that fails: a refused payout is credited back, a failed one stays
// pending until ResumePayouts or a retry settles it, and each is paid once.
func TestMintPayoutSettles(t *testing.T) {
	ctx := context.Background()
	store := protocol.NewMemMintStore()
	funding := &flakyFunding{VoucherFunding: protocol.NewVoucherFunding(store, [32]byte{1})}
	_, mintID := mintTestKey(t, 1)
	_, server := mintTestKey(t, 2)
	svc := protocol.NewMintService(mintID, protocol.NewMintKeyring(make([]byte, 32)), store, funding)
	if _, err := store.CreditDeposits(ctx, server, []protocol.SpendRecord{memSpend(1, server, 1, 100)}); err != nil {
		t.Fatal(err)
	}
	payout := func(id byte, amount uint64, dest string) (*pb.PayoutResponse, error) {
		body, err := proto.Marshal(&pb.MintRequest{RequestId: bytes.Repeat([]byte{id}, 16),
			Op: &pb.MintRequest_Payout{Payout: &pb.Payout{Amount: &pb.UnitAmount{Unit: "msat", Amount: amount}, Destination: []byte(dest)}}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := svc.Handle(ctx, server, &pb.Request{Body: body})
		if err != nil {
			return nil, err
		}
		out := new(pb.MintResponse)
		if err := proto.Unmarshal(resp.Body, out); err != nil {
			t.Fatal(err)
		}
		return out.GetPayout(), nil
	}
	balance := func() uint64 {
		b, _ := store.Balance(ctx, server)
		return b[0].Amount
	}

	if _, err := payout(1, 30, "refuse"); !errors.Is(err, protocol.ErrPayoutRefused) {
		t.Fatalf("refused: %v", err)
	}
	if balance() != 100 {
		t.Fatalf("refused payout not credited back: %d", balance())
	}
	if _, err := payout(1, 30, "refuse"); !errors.Is(err, protocol.ErrPayoutRefused) {
		t.Fatalf("refused again: %v", err)
	}

	funding.down = true
	if _, err := payout(2, 40, ""); err == nil {
		t.Fatal("paid while the rail is down")
	}
	if balance() != 60 {
		t.Fatalf("pending payout not debited: %d", balance())
	}
	if p, _ := store.PendingPayouts(ctx); len(p) != 1 {
		t.Fatalf("%d pending", len(p))
	}
	if err := svc.ResumePayouts(ctx); err == nil {
		t.Fatal("resumed while the rail is down")
	}
	funding.down = false
	if err := svc.ResumePayouts(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := store.PendingPayouts(ctx); len(p) != 0 {
		t.Fatalf("%d pending", len(p))
	}
	calls := funding.calls
	got, err := payout(2, 40, "")
	if err != nil {
		t.Fatal(err)
	}
	if funding.calls != calls || got.Remaining != 60 {
		t.Fatalf("settled payout paid again (%d calls) or remaining %d", funding.calls-calls, got.Remaining)
	}
	if a, err := funding.Voucher(ctx, string(got.Receipt)); err != nil || a.Value != 40 {
		t.Fatalf("payout voucher %+v, %v", a, err)
	}
}

// TestVoucherFunding checks voucher codes and payout vouchers.
func TestVoucherFunding(t *testing.T) {
	ctx := context.Background()
	store := protocol.NewMemMintStore()
	f := protocol.NewVoucherFunding(store, [32]byte{1})
	code, err := f.CreateVoucher(ctx, bytes.NewReader(make([]byte, 20)), "msat", 5)
	if err != nil || len(code) != protocol.VoucherCodeLen {
		t.Fatalf("%q, %v", code, err)
	}
	if id, err := f.Account(ctx, []byte(code)); err != nil || id != protocol.VoucherID(code) {
		t.Fatalf("account: %v", err)
	}
	want := sha256.Sum256([]byte("scrip/v1/voucher\x00" + code))
	if protocol.VoucherID(code) != want {
		t.Fatal("voucher ID")
	}
	for _, bad := range []string{"", "short", "has a space in it!!", string(bytes.Repeat([]byte{'a'}, protocol.MaxVoucherCode+1))} {
		if _, err := f.Account(ctx, []byte(bad)); !errors.Is(err, protocol.ErrBadRequest) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := f.CreateVoucher(ctx, bytes.NewReader(make([]byte, 20)), "msat", 5); err != nil {
		t.Fatalf("the same voucher again: %v", err)
	}
	if _, err := f.CreateVoucher(ctx, bytes.NewReader(make([]byte, 20)), "msat", 6); !errors.Is(err, protocol.ErrMintRequestReused) {
		t.Fatalf("the same code with another value: %v", err)
	}
	o := protocol.PayoutOrder{Server: "server", RequestID: [16]byte{1}, Unit: "msat", Amount: 7}
	r1, err := f.Pay(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := f.Pay(ctx, o)
	if err != nil || !bytes.Equal(r1, r2) {
		t.Fatalf("Pay is not idempotent: %v", err)
	}
	o.RequestID[0] = 2
	if r3, _ := f.Pay(ctx, o); bytes.Equal(r3, r1) {
		t.Fatal("two payouts share a voucher")
	}
	if _, err := protocol.NewVoucherFunding(store, [32]byte{}).Pay(ctx, o); !errors.Is(err, protocol.ErrPayoutRefused) {
		t.Fatalf("zero payout key: %v", err)
	}
	if _, err := f.CreateVoucher(ctx, bytes.NewReader(make([]byte, 20)), "", math.MaxUint64); err == nil {
		t.Fatal("voucher without a unit")
	}
}

// TestMintRestoreReplays checks that Restore answers with the stored row
// as it is, never with an answer computed afresh.
func TestMintRestoreReplays(t *testing.T) {
	ctx := context.Background()
	identity := ed25519.NewKeyFromSeed(make([]byte, 32))
	_, sec, err := coin.GenerateKeyset(bytes.NewReader(bytes.Repeat([]byte{7}, 1024)), identity, coin.KeysetParams{
		Unit: "msat", Exponents: []uint8{0}, NotBefore: mintT0.Add(-time.Hour), IssueUntil: mintT0.Add(time.Hour),
		SpendUntil: mintT0.Add(time.Hour), DepositUntil: mintT0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	keys := protocol.NewMintKeyring(identity.Public().(ed25519.PublicKey))
	if err := keys.Add(sec); err != nil {
		t.Fatal(err)
	}
	store := protocol.NewMemMintStore()
	acct := openFunding(t, store, 1, 10)
	key, _ := sec.Keyset().Key(1)
	row := protocol.IssueRow{Row: coin.Row{Key: key, Nonce: [32]byte{5}, ChallengeHash: [32]byte{6}, B: 1, S: [32]byte{'s', 't', 'o', 'r', 'e', 'd'}},
		KeysetID: sec.Keyset().ID(), Amount: 1}
	if _, err := store.CommitIssue(ctx, acct, "msat", []protocol.IssueRow{row}); err != nil {
		t.Fatal(err)
	}
	_, id := mintTestKey(t, 1)
	svc := protocol.NewMintService(id, keys, store, protocol.NewVoucherFunding(store, [32]byte{1}),
		protocol.WithMintClock(func() time.Time { return mintT0 }))
	body, _ := proto.Marshal(&pb.MintRequest{RequestId: make([]byte, 16),
		Op: &pb.MintRequest_Restore{Restore: &pb.Restore{Nonces: [][]byte{row.Nonce[:], make([]byte, 32)}}}})
	resp, err := svc.Handle(ctx, id, &pb.Request{Body: body})
	if err != nil {
		t.Fatal(err)
	}
	out := new(pb.MintResponse)
	if err := proto.Unmarshal(resp.Body, out); err != nil {
		t.Fatal(err)
	}
	coins := out.GetRestore().GetCoins()
	if len(coins) != 1 {
		t.Fatalf("%d rows", len(coins))
	}
	sg, _ := sec.Signer(1)
	r0, r1 := sg.Begin(row.Nonce)
	got := coins[0]
	if !bytes.Equal(got.Answer.S, row.S[:]) || got.Answer.B != 1 || !bytes.Equal(got.ChallengeHash, row.ChallengeHash[:]) ||
		!bytes.Equal(got.R0, r0[:]) || !bytes.Equal(got.R1, r1[:]) || got.Amount != 1 {
		t.Fatalf("restored %v", got)
	}
}
