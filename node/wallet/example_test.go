package wallet_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/wallet"
)

// Example withdraws coins from an in-process mint, pays a server, and
// settles the payment.
func Example() {
	ctx := context.Background()
	now := time.Now()

	// The mint: an identity key and a keyset.
	mintPub, mintKey, _ := ed25519.GenerateKey(rand.Reader)
	ks, secret, _ := coin.GenerateKeyset(rand.Reader, mintKey, coin.KeysetParams{
		Unit: "msat", Exponents: []uint8{0, 1, 2, 3, 4, 5, 6, 7},
		NotBefore: now.Add(-time.Minute), IssueUntil: now.Add(time.Hour),
		SpendUntil: now.Add(2 * time.Hour), DepositUntil: now.Add(3 * time.Hour),
	})

	dir, _ := os.MkdirTemp("", "wallet-example")
	defer os.RemoveAll(dir)
	w, err := wallet.Open(filepath.Join(dir, "wallet.db"), wallet.Mint{Key: mintPub, Peer: []byte("mint")})
	if err != nil {
		panic(err)
	}
	defer w.Close()

	// Withdraw 8 + 4 + 1: counters first, then commitments, then coins.
	wds, _ := w.NextWithdrawals(ctx, ks, coin.Decompose(13), [32]byte{})
	for _, wd := range wds {
		signer, _ := secret.Signer(wd.Amount)
		r0, r1 := signer.Begin(wd.Nonce())                      // mint, round one
		c0, c1, _ := w.Challenges(ctx, wd, r0, r1)              // committed, then sent
		row, _ := signer.Finish(time.Now(), wd.Nonce(), c0, c1) // mint, round two
		if _, err := w.FinishWithdrawal(ctx, wd, row.Answer()); err != nil {
			panic(err)
		}
	}

	// Pay 5 for one request at one server.
	server := []byte("server peer ID")
	digest := sha256.Sum256([]byte("request body"))
	spends, err := w.Reserve(ctx, server, []byte("request-1"), digest, 5)
	if err != nil {
		panic(err)
	}
	fmt.Println("coins sent:", len(spends))
	// ... the server answers; the call was served.
	if err := w.Settle(ctx, []byte("request-1"), true); err != nil {
		panic(err)
	}
	b, _ := w.Balance(ctx)
	fmt.Printf("unspent %d, reserved %d\n", b.Unspent, b.Reserved)
	// Output:
	// coins sent: 2
	// unspent 8, reserved 0
}
