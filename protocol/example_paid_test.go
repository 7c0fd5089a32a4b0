package protocol_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// Example_paidStorage shows everything an existing Go storage node adds to
// sell its storage per call (the lines between the markers): a resource
// manager with scrip's limits, a signed price schedule, the mint's
// keysets, a spent set, and the storage service behind a paywall. The
// node's own storage is stood in for by a MemBackend; a real node keeps
// its spent set durably and deposits its coins (package node).
func Example_paidStorage() {
	ctx := context.Background()
	keysets, wallet := exampleMint() // the mint's published keysets; a client's coins

	// ---- the storage node ----
	rm, _ := protocol.NewResourceManager(nil)
	node, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm))
	if err != nil {
		panic(err)
	}
	defer node.Close()
	storage := protocol.NewMemBackend(1<<30, 1<<26, nil) // the node's own storage
	prices := protocol.NewPriceBook()
	sched, err := protocol.SignSchedule(node.Peerstore().PrivKey(node.ID()), protocol.Schedule{
		Server: node.ID(), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), Unit: "msat",
		Rates: protocol.Rates{PerCall: 4, StorePerGiBMonth: 1 << 20, ReadPerGiB: 1 << 20, WritePerGiB: 1 << 20},
	})
	if err != nil {
		panic(err)
	}
	prices.Publish(sched, "")
	paywall := protocol.NewPaywall(node.ID(), prices, keysets, protocol.NewMemSpentStore())
	if err := protocol.NewStorageServer(storage, paywall).Register(node); err != nil {
		panic(err)
	}
	// ---- end of the storage node ----

	// A client stores five bytes and reads them back, paying per call.
	client, _ := libp2p.New(libp2p.NoListenAddrs)
	defer client.Close()
	client.Connect(ctx, peer.AddrInfo{ID: node.ID(), Addrs: node.Addrs()})
	sc := protocol.NewStorageClient(protocol.NewPaidClient(client, wallet))
	si := make([]byte, protocol.StorageIndexSize)
	got, err := sc.Allocate(ctx, node.ID(), &pb.Allocate{StorageIndex: si, ShareNumbers: []uint32{0}, AllocatedSize: 5, LeaseSeconds: 3600})
	fmt.Println("allocated", got.GetAllocated(), err)
	fmt.Println("write", sc.Write(ctx, node.ID(), &pb.Write{StorageIndex: si, Data: []byte("hello")}))
	fmt.Println("close", sc.Close(ctx, node.ID(), &pb.Close{StorageIndex: si}))
	data, err := sc.Read(ctx, node.ID(), &pb.Read{StorageIndex: si, Length: 5})
	fmt.Printf("read %q %v\n", data, err)
	fmt.Println("paid", wallet.paid)
	// Output:
	// allocated [0] <nil>
	// write <nil>
	// close <nil>
	// read "hello" <nil>
	// paid 11
}

// exampleMint makes a keyset as a mint would publish it, and withdraws a
// few bearer coins into a client's purse.
func exampleMint() (coin.Keysets, *purse) {
	now := time.Now()
	_, mintKey, _ := ed25519.GenerateKey(rand.Reader)
	ks, secret, err := coin.GenerateKeyset(rand.Reader, mintKey, coin.KeysetParams{
		Unit: "msat", Exponents: []uint8{0, 1, 2, 3, 4, 5}, NotBefore: now.Add(-time.Minute),
		IssueUntil: now.Add(time.Hour), SpendUntil: now.Add(time.Hour), DepositUntil: now.Add(2 * time.Hour),
	})
	if err != nil {
		panic(err)
	}
	p := &purse{keys: make(map[[32]byte]ed25519.PrivateKey)}
	var seed [32]byte
	rand.Read(seed[:])
	for i, amount := range []uint64{1, 2, 4, 8, 16, 32, 1, 2, 4, 8} {
		w, _ := coin.NewWithdrawal(&seed, uint64(i), ks, amount, [32]byte{})
		signer, _ := secret.Signer(amount)
		c0, c1, _ := w.Challenges(signer.Begin(w.Nonce()))
		row, _ := signer.Finish(now, w.Nonce(), c0, c1)
		c, err := w.Finish(row.Answer())
		if err != nil {
			panic(err)
		}
		p.coins = append(p.coins, c)
		p.keys[c.Pub] = w.CoinKey()
	}
	return coin.KeysetMap{ks.ID(): ks}, p
}

// purse is a minimal [protocol.Payer]: a wallet would persist its coins'
// states and keep coins a server refused for that server.
type purse struct {
	mu    sync.Mutex
	coins []*coin.Coin
	keys  map[[32]byte]ed25519.PrivateKey
	paid  uint64
}

func (p *purse) Pay(ctx context.Context, server peer.ID, requestID []byte, unit string, amount uint64, digest [protocol.DigestSize]byte) ([]*coin.Spend, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	amounts := make([]uint64, len(p.coins))
	for i, c := range p.coins {
		amounts[i] = c.Amount
	}
	idx, err := coin.Select(amounts, amount)
	if err != nil {
		return nil, err
	}
	var out []*coin.Spend
	for _, i := range idx {
		s, err := coin.NewSpend(p.coins[i], p.keys[p.coins[i].Pub], []byte(server), digest)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	slices.Sort(idx)
	for j := len(idx) - 1; j >= 0; j-- {
		p.coins = append(p.coins[:idx[j]], p.coins[idx[j]+1:]...)
	}
	return out, nil
}

func (p *purse) Settle(ctx context.Context, server peer.ID, requestID []byte, spends []*coin.Spend, outcome protocol.Outcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range spends {
		if outcome == protocol.OutcomeRefused {
			p.coins = append(p.coins, &s.Coin)
		} else {
			p.paid += s.Amount
		}
	}
}
