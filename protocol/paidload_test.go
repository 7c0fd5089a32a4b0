package protocol

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"go.uber.org/goleak"

	"github.com/scripnet/scrip/coin"

	"github.com/scripnet/scrip/protocol/pb"
)

// TestPaidLoad: 10,000 paid calls from 64 concurrent clients, each its own
// libp2p host, complete with every coin recorded exactly once, no stream
// left open and, once the hosts are closed, no goroutine left running.
// The server has the same key over both transports, so that one set of
// coins designated to it serves both runs (each with an empty spent set).
func TestPaidLoad(t *testing.T) {
	const (
		calls   = 10_000
		clients = 64
	)
	key, id := testKey(t, 64)
	allCoins := mint(t).good.withdraw(t, calls, 8, coin.Designation([]byte(id)))
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			leaks := goleak.IgnoreCurrent()
			srv := newTestServer(t, serverConfig{addr: tr.addr, key: key, noCleanup: true})
			si := srv.share(t, 8192, 'l')
			coins := allCoins

			hosts := make([]host.Host, clients)
			wallets := make([]*testWallet, clients)
			quota := make([]int, clients)
			for i := range clients {
				h, err := libp2p.New(libp2p.NoListenAddrs)
				if err != nil {
					t.Fatal(err)
				}
				hosts[i] = h
				connect(t, h, srv.host)
				quota[i] = calls / clients
				if i < calls%clients {
					quota[i]++
				}
				wallets[i] = newTestWallet(coins[:quota[i]])
				coins = coins[quota[i]:]
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			start := time.Now()
			var wg sync.WaitGroup
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sc := NewStorageClient(NewPaidClient(hosts[i], wallets[i]))
					sc.Paid().SetSchedule(srv.sched)
					for range quota[i] {
						data, err := sc.Read(ctx, srv.host.ID(), &pb.Read{StorageIndex: si[:], Length: 4096})
						if err != nil || len(data) != 4096 {
							t.Errorf("client %d: %v", i, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			took := time.Since(start)
			st := srv.pw.Verifier().Stats()
			t.Logf("%d calls in %v (%v per call); %d batches, %.1f spends per batch, %d shared",
				calls, took, took/calls, st.Batches, float64(st.Items)/float64(st.Batches), st.Shared)

			// Every coin recorded once, every wallet spent exactly.
			if srv.spent.Coins() != calls || srv.spent.Requests() != calls {
				t.Fatalf("%d coins and %d requests recorded, want %d", srv.spent.Coins(), srv.spent.Requests(), calls)
			}
			seen := make(map[[32]byte]bool)
			for _, sc := range srv.spent.Spends() {
				if seen[sc.Spend.Pub] {
					t.Fatal("a coin recorded twice")
				}
				seen[sc.Spend.Pub] = true
			}
			for i, w := range wallets {
				if w.left() != 0 || w.count(OutcomeSpent) != quota[i] || len(w.reserved) != 0 {
					t.Fatalf("client %d: %d coins left, outcomes %v", i, w.left(), w.outcomes)
				}
			}

			// No stream left open at the server.
			open := -1
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				srv.host.Network().ResourceManager().ViewProtocol(StorageID, func(s network.ProtocolScope) error {
					open = s.Stat().NumStreamsInbound
					return nil
				})
				if open == 0 {
					break
				}
			}
			if open != 0 {
				t.Fatalf("%d storage streams still open", open)
			}

			for _, h := range hosts {
				h.Close()
			}
			srv.host.Close()
			goleak.VerifyNone(t, leaks)
		})
	}
}
