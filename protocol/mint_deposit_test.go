package protocol_test

import (
	"context"
	"crypto/sha256"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// TestMintDepositForgedBatch: the mint verifies a Deposit in batches of
// 64; after a batch with a forged spend it looks at no more coins
// (DEPOSIT_NOT_TAKEN, to be deposited again) and quarantines the caller,
// whose deposits are then verified in batches of 8.
func TestMintDepositForgedBatch(t *testing.T) {
	f := newMintFix(t, "")
	_, server := mintTestKey(t, 79)
	ctx := context.Background()
	var bearer [32]byte
	items := make([]coin.Item, 100)
	for i := range items {
		c, key := f.localCoin(t, f.active, 1, bearer)
		d := sha256.Sum256([]byte{byte(i)})
		items[i] = coin.Item{Spend: mustSpend(t, c, key, server, d), Digest: d}
	}
	forge := func(it coin.Item) coin.Item {
		s := *it.Spend
		s.SpendSig[40] ^= 1
		return coin.Item{Spend: &s, Digest: it.Digest}
	}
	deposit := func(items []coin.Item) []pb.DepositStatus {
		t.Helper()
		op := &pb.Deposit{}
		for _, it := range items {
			op.Coins = append(op.Coins, &pb.SpentCoin{Spend: it.Spend.Bytes(), RequestDigest: it.Digest[:]})
		}
		body, err := proto.Marshal(&pb.MintRequest{RequestId: make([]byte, 16), Op: &pb.MintRequest_Deposit{Deposit: op}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := f.svc.Handle(ctx, server, &pb.Request{Body: body})
		if err != nil {
			t.Fatal(err)
		}
		out := new(pb.MintResponse)
		if err := proto.Unmarshal(resp.Body, out); err != nil {
			t.Fatal(err)
		}
		var st []pb.DepositStatus
		for _, r := range out.GetDeposit().GetResults() {
			st = append(st, r.Status)
		}
		if len(st) != len(items) {
			t.Fatalf("%d results for %d coins", len(st), len(items))
		}
		return st
	}
	expect := func(got []pb.DepositStatus, want func(i int) pb.DepositStatus) {
		t.Helper()
		for i, s := range got {
			if s != want(i) {
				t.Fatalf("coin %d: %v, want %v", i, s, want(i))
			}
		}
	}

	first := append([]coin.Item(nil), items[:80]...)
	first[10] = forge(first[10])
	expect(deposit(first), func(i int) pb.DepositStatus {
		switch {
		case i == 10:
			return pb.DepositStatus_DEPOSIT_INVALID
		case i >= 64:
			return pb.DepositStatus_DEPOSIT_NOT_TAKEN
		}
		return pb.DepositStatus_DEPOSIT_CREDITED
	})

	// Quarantined: batches of 8. Coins 64 to 79 again, and a forgery at
	// 84 stops the deposit after the batch of 80 to 87.
	again := append([]coin.Item(nil), items[64:]...)
	again[84-64] = forge(again[84-64])
	expect(deposit(again), func(i int) pb.DepositStatus {
		switch i += 64; {
		case i == 84:
			return pb.DepositStatus_DEPOSIT_INVALID
		case i >= 88:
			return pb.DepositStatus_DEPOSIT_NOT_TAKEN
		}
		return pb.DepositStatus_DEPOSIT_CREDITED
	})
	expect(deposit(items[84:]), func(i int) pb.DepositStatus {
		if i += 84; i > 84 && i < 88 {
			return pb.DepositStatus_DEPOSIT_ALREADY_CREDITED
		}
		return pb.DepositStatus_DEPOSIT_CREDITED
	})
}
