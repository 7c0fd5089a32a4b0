package coin_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/scripnet/scrip/coin"
)

// Example_withdrawSpendVerify withdraws one coin blindly, spends it at one
// server for one request, and verifies the spend as that server would.
func Example_withdrawSpendVerify() {
	now := time.Now()

	// The mint: an identity key and a keyset of denominations 1, 2, 4, ..., 128.
	_, mintKey, _ := ed25519.GenerateKey(rand.Reader)
	ks, secret, err := coin.GenerateKeyset(rand.Reader, mintKey, coin.KeysetParams{
		Unit:         "msat",
		Exponents:    []uint8{0, 1, 2, 3, 4, 5, 6, 7},
		NotBefore:    now.Add(-time.Minute),
		IssueUntil:   now.Add(24 * time.Hour),
		SpendUntil:   now.Add(48 * time.Hour),
		DepositUntil: now.Add(72 * time.Hour),
	})
	if err != nil {
		panic(err)
	}

	// The client: a wallet seed and a counter it has persisted as used.
	var seed [32]byte
	rand.Read(seed[:])
	w, err := coin.NewWithdrawal(&seed, 0, ks, 16, [32]byte{}) // a bearer coin of 16
	if err != nil {
		panic(err)
	}

	// Round one: the mint commits to R0, R1 for the client's nonce.
	signer, _ := secret.Signer(16)
	r0, r1 := signer.Begin(w.Nonce())
	// Round two: the client blinds its challenges; the mint answers one clause.
	c0, c1, err := w.Challenges(r0, r1)
	if err != nil {
		panic(err)
	}
	row, _ := signer.Finish(now, w.Nonce(), c0, c1)
	// (A real mint commits row durably under (row.Key, row.Nonce) here.)
	c, err := w.Finish(row.Answer())
	if err != nil {
		panic(err)
	}

	// Spend the coin at one server for one request.
	server := []byte("peer ID bytes of the server")
	digest := sha256.Sum256([]byte("the exact request body"))
	spend, _ := coin.NewSpend(c, w.CoinKey(), server, digest)

	// The server verifies offline with the mint's published keyset.
	v := &coin.Verifier{Keysets: coin.KeysetMap{ks.ID(): ks}, Server: server, Window: coin.WindowSpend}
	fmt.Println("spend:", v.VerifySpend(spend, digest, now))

	// The same spend attached to another request, or shown to another
	// server, is a bad signature.
	other := sha256.Sum256([]byte("another request"))
	fmt.Println("replayed:", errors.Is(v.VerifySpend(spend, other, now), coin.ErrBadSignature))
	elsewhere := &coin.Verifier{Keysets: v.Keysets, Server: []byte("server B"), Window: coin.WindowSpend}
	fmt.Println("elsewhere:", errors.Is(elsewhere.VerifySpend(spend, digest, now), coin.ErrBadSignature))
	// Output:
	// spend: <nil>
	// replayed: true
	// elsewhere: true
}

// ExampleSelect pays a price of 11 exactly from a wallet's coins.
func ExampleSelect() {
	amounts := []uint64{8, 4, 2, 1, 1, 16}
	idx, err := coin.Select(amounts, 11)
	fmt.Println(idx, err)
	_, err = coin.Select([]uint64{8, 4}, 11)
	fmt.Println(errors.Is(err, coin.ErrNoExactChange))
	fmt.Println(coin.Decompose(11))
	// Output:
	// [0 2 3] <nil>
	// true
	// [8 2 1]
}

// ExampleVerifier_VerifyBatch verifies the spends of a call together and
// names the bad one.
func ExampleVerifier_VerifyBatch() {
	now := time.Now()
	_, mintKey, _ := ed25519.GenerateKey(rand.Reader)
	ks, secret, _ := coin.GenerateKeyset(rand.Reader, mintKey, coin.KeysetParams{
		Unit: "msat", Exponents: []uint8{0, 1, 2},
		NotBefore: now.Add(-time.Minute), IssueUntil: now.Add(time.Hour),
		SpendUntil: now.Add(time.Hour), DepositUntil: now.Add(time.Hour),
	})
	var seed [32]byte
	rand.Read(seed[:])
	server := []byte("server")
	digest := sha256.Sum256([]byte("request"))
	var items []coin.Item
	for i, amount := range []uint64{4, 2, 1} {
		w, _ := coin.NewWithdrawal(&seed, uint64(i), ks, amount, coin.Designation(server))
		signer, _ := secret.Signer(amount)
		c0, c1, _ := w.Challenges(signer.Begin(w.Nonce()))
		row, _ := signer.Finish(now, w.Nonce(), c0, c1)
		c, _ := w.Finish(row.Answer())
		s, _ := coin.NewSpend(c, w.CoinKey(), server, digest)
		items = append(items, coin.Item{Spend: s, Digest: digest})
	}
	items[1].Spend.SpendSig[0] ^= 1 // tamper with one

	v := &coin.Verifier{Keysets: coin.KeysetMap{ks.ID(): ks}, Server: server, Window: coin.WindowSpend}
	var be *coin.BatchError
	err := v.VerifyBatch(items, now)
	fmt.Println(errors.As(err, &be), be.Failed(), errors.Is(err, coin.ErrBadSignature))
	// Output:
	// true [1] true
}
