package protocol_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scripnet/scrip/protocol"
)

// TestMintRetiredKeyset: a keyset retired in the keyring refuses round
// one with ErrKeysetRetired (EXPIRED_KEYSET), while a round two whose row
// is stored is still answered from it, and its coins still verify.
func TestMintRetiredKeyset(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := newMintFix(t, "/ip4/127.0.0.1/tcp/0")
	mc, _ := f.client(t)
	ks := f.active.Keyset()
	code := f.voucher(t, 100)
	ws := f.withdrawals(t, ks, [32]byte{}, 4, 8)
	chs := challenges(ctx, t, mc, ks, ws)
	first, err := mc.WithdrawFinish(ctx, ks.ID(), []byte(code), chs)
	if err != nil {
		t.Fatal(err)
	}

	if err := f.keys.Retire([32]byte{1}); !errors.Is(err, protocol.ErrNotFound) {
		t.Fatalf("retiring an unknown keyset: %v", err)
	}
	if f.keys.Retired(ks.ID()) {
		t.Fatal("retired before Retire")
	}
	if err := f.keys.Retire(ks.ID()); err != nil {
		t.Fatal(err)
	}
	if !f.keys.Retired(ks.ID()) {
		t.Fatal("not retired after Retire")
	}
	_, err = mc.WithdrawBegin(ctx, ks.ID(), []protocol.WithdrawCoin{{Amount: 4, Nonce: [32]byte{7}}})
	if !errors.Is(err, protocol.ErrExpiredKeyset) {
		t.Fatalf("round one of a retired keyset: %v", err)
	}
	again, err := mc.WithdrawFinish(ctx, ks.ID(), []byte(code), chs)
	if err != nil {
		t.Fatalf("a stored row of a retired keyset is answered: %v", err)
	}
	if again[0] != first[0] || again[1] != first[1] {
		t.Fatal("the replayed answers differ")
	}
	for _, c := range finish(t, ws, again) {
		if _, err := f.keys.Lookup(c.KeysetID); err != nil {
			t.Fatalf("a retired keyset's coins stay good: %v", err)
		}
	}
}
