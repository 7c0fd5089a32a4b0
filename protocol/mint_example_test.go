package protocol_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// Example_mintWithdraw runs a mint on a libp2p host and withdraws two
// coins from it, paid by a prepaid voucher.
func Example_mintWithdraw() {
	ctx := context.Background()
	now := time.Now()

	// The mint: an identity key, a keyset, a store, voucher funding and a host.
	_, identity, _ := ed25519.GenerateKey(rand.Reader)
	_, secret, _ := coin.GenerateKeyset(rand.Reader, identity, coin.KeysetParams{
		Unit: "msat", Exponents: []uint8{0, 1, 2, 3, 4, 5, 6, 7},
		NotBefore: now.Add(-time.Minute), IssueUntil: now.Add(24 * time.Hour),
		SpendUntil: now.Add(48 * time.Hour), DepositUntil: now.Add(72 * time.Hour),
	})
	keys := protocol.NewMintKeyring(identity.Public().(ed25519.PublicKey))
	keys.Add(secret)
	store := protocol.NewMemMintStore()
	var payoutKey [32]byte
	rand.Read(payoutKey[:])
	funding := protocol.NewVoucherFunding(store, payoutKey)
	mintHost, _ := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	defer mintHost.Close()
	protocol.NewMintService(mintHost.ID(), keys, store, funding).Register(mintHost)

	// An admin sells a voucher out of band.
	voucher, _ := funding.CreateVoucher(ctx, rand.Reader, "msat", 100)

	// A wallet: a seed, a host and a client of the mint.
	var seed [32]byte
	rand.Read(seed[:])
	walletHost, _ := libp2p.New(libp2p.NoListenAddrs)
	defer walletHost.Close()
	walletHost.Connect(ctx, peer.AddrInfo{ID: mintHost.ID(), Addrs: mintHost.Addrs()})
	mint := protocol.NewMintClient(walletHost, mintHost.ID(), identity.Public().(ed25519.PublicKey))

	published, err := mint.Keysets(ctx)
	if err != nil {
		panic(err)
	}
	ks := published[0].Keyset

	// Round one: commitments for each coin's nonce.
	var ws []*coin.Withdrawal
	var wcs []protocol.WithdrawCoin
	for i, amount := range []uint64{64, 8} {
		w, _ := coin.NewWithdrawal(&seed, uint64(i), ks, amount, [32]byte{})
		ws = append(ws, w)
		wcs = append(wcs, protocol.WithdrawCoin{Amount: amount, Nonce: w.Nonce()})
	}
	commitments, err := mint.WithdrawBegin(ctx, ks.ID(), wcs)
	if err != nil {
		panic(err)
	}
	// Round two: blinded challenges, paid by the voucher.
	var chs []protocol.BlindChallenge
	for i, w := range ws {
		c0, c1, _ := w.Challenges(commitments[i].R0, commitments[i].R1)
		chs = append(chs, protocol.BlindChallenge{Amount: w.Amount(), Nonce: w.Nonce(), C0: c0, C1: c1})
	}
	answers, err := mint.WithdrawFinish(ctx, ks.ID(), []byte(voucher), chs)
	if err != nil {
		panic(err)
	}
	for i, w := range ws {
		c, err := w.Finish(answers[i])
		fmt.Println("coin", c.Amount, err)
	}
	left, _ := funding.Voucher(ctx, voucher)
	fmt.Println("voucher left:", left.Remaining)
	// Output:
	// coin 64 <nil>
	// coin 8 <nil>
	// voucher left: 28
}
