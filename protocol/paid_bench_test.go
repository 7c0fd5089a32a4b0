package protocol

import (
	"context"
	"crypto/rand"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/scripnet/scrip/protocol/pb"
)

// benchCoins is a pool of coins of 8 designated to the benchmark server,
// whose key is fixed so that the pool serves every round of every
// benchmark (each round starts a server with an empty spent store).
var benchCoins struct {
	sync.Mutex
	coins []testCoin
}

func benchServerKey(b *testing.B) crypto.PrivKey {
	key, _, err := crypto.GenerateEd25519Key(mrand.NewChaCha8([32]byte{'b', 'e', 'n', 'c', 'h'}))
	if err != nil {
		b.Fatal(err)
	}
	return key
}

func benchPool(b *testing.B, n int, des [32]byte) []testCoin {
	benchCoins.Lock()
	defer benchCoins.Unlock()
	if have := len(benchCoins.coins); have < n {
		benchCoins.coins = append(benchCoins.coins, mint(b).good.withdraw(b, n-have, 8, des)...)
	}
	return benchCoins.coins[:n]
}

// BenchmarkCall measures storage calls over loopback TCP, each a Read of
// 4 KiB, ns/op per call, with the in-memory spent store:
//
//   - unpaid-c64: 64 concurrent callers (8 client hosts of 8), the server's
//     prices all zero, no coins;
//   - paid-c64: the same, each call paid up front with one designated coin
//     (price 8: 4 per call, 4 for 4 KiB read), verified and recorded;
//   - paid-c64-forger: paid-c64 while one more peer sends, as fast as it
//     can on as many concurrent streams as the server's per-peer limit
//     allows (128), spends of a real coin with random spend signatures,
//     each for a fresh request ID;
//   - upfront: one caller paying up front under the schedule it holds;
//   - quote-then-pay: one caller that sends each call unpaid, is told the
//     price (PAYMENT_REQUIRED) and pays.
//
// Coins are withdrawn before the timer starts. Goals (BENCHMARKS.md):
// paid ≥ 0.6× unpaid throughput; paid with the forger ≥ 0.8× paid; up
// front ≥ 1.25× faster than quote-then-pay.
func BenchmarkCall(b *testing.B) {
	b.Run("unpaid-c64", func(b *testing.B) { benchCall(b, benchConfig{callers: 64, free: true}) })
	b.Run("paid-c64", func(b *testing.B) { benchCall(b, benchConfig{callers: 64}) })
	b.Run("paid-c64-forger", func(b *testing.B) { benchCall(b, benchConfig{callers: 64, forger: true}) })
	b.Run("upfront", func(b *testing.B) { benchCall(b, benchConfig{callers: 1}) })
	b.Run("quote-then-pay", func(b *testing.B) { benchCall(b, benchConfig{callers: 1, quoteFirst: true}) })
}

// forgerStreams is how many calls the forger keeps in flight: as many as
// the server's per-peer stream limit allows.
var forgerStreams = DefaultLimits(StorageID).PeerStreams

type benchConfig struct {
	callers    int
	free       bool
	forger     bool
	quoteFirst bool
}

func benchCall(b *testing.B, cfg benchConfig) {
	const hostsMax = 8
	srv := newTestServer(b, serverConfig{addr: "/ip4/127.0.0.1/tcp/0", key: benchServerKey(b), free: cfg.free})
	si := srv.share(b, 8192, 'b')
	var coins []testCoin
	if !cfg.free {
		coins = benchPool(b, b.N+1, srv.designation())
	}
	nhosts := min(cfg.callers, hostsMax)
	hosts := make([]host.Host, nhosts)
	for i := range hosts {
		hosts[i] = newClientHost(b, srv.host)
	}
	// The callers share one wallet per host; the wallet hands out coins
	// from the pool.
	wallets := make([]*testWallet, nhosts)
	clients := make([]*StorageClient, nhosts)
	quota := make([]int64, nhosts)
	left := coins
	for i := range hosts {
		quota[i] = int64(b.N / nhosts)
		if i < b.N%nhosts {
			quota[i]++
		}
		var mine []testCoin
		if !cfg.free {
			mine, left = left[:quota[i]], left[quota[i]:]
		}
		wallets[i] = newTestWallet(mine)
		clients[i] = NewStorageClient(NewPaidClient(hosts[i], wallets[i], WithUpfront(!cfg.quoteFirst)))
		if !cfg.quoteFirst {
			clients[i].Paid().SetSchedule(srv.sched)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var forged, forgerErrs atomic.Int64
	var forgers sync.WaitGroup
	stopForger := make(chan struct{})
	if cfg.forger {
		fh := newClientHost(b, srv.host)
		good := coins[len(coins)-1]
		for range forgerStreams {
			forgers.Add(1)
			go func() {
				defer forgers.Done()
				for {
					select {
					case <-stopForger:
						return
					default:
					}
					req, _ := rawPaid{op: readOp(si, 4096), sched: srv.sched, coins: []testCoin{good}, signFor: srv.host.ID()}.request(b)
					// A random signature instead of a real one: forging costs
					// the forger nothing.
					sp := req.Spends[0]
					rand.Read(sp[len(sp)-64:])
					_, err := Call(ctx, fh, srv.host.ID(), StorageID, req)
					forged.Add(1)
					if err != nil {
						forgerErrs.Add(1)
					}
				}
			}()
		}
		// Let the forger get itself quarantined before the clock starts.
		time.Sleep(50 * time.Millisecond)
	}

	next := make([]atomic.Int64, nhosts)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.SetBytes(4096)
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range cfg.callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := i % nhosts
			sc := clients[h]
			read := &pb.Read{StorageIndex: si[:], Length: 4096}
			for next[h].Add(1) <= quota[h] {
				if _, err := sc.Read(ctx, srv.host.ID(), read); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	close(stopForger)
	forgers.Wait()
	st := srv.pw.Verifier().Stats()
	if st.Batches > 0 {
		b.ReportMetric(float64(st.Items)/float64(st.Batches), "spends/batch")
	}
	if cfg.forger {
		b.ReportMetric(float64(forged.Load())/float64(b.N), "forged/op")
		if forged.Load() != forgerErrs.Load() {
			b.Fatalf("%d of %d forged calls succeeded", forged.Load()-forgerErrs.Load(), forged.Load())
		}
	}
	for _, w := range wallets {
		if n := w.count(OutcomeRefused) + w.count(OutcomeUnknown); n > 0 {
			b.Fatalf("%d honest payments not spent: %v", n, w.outcomes)
		}
	}
	if !cfg.free && srv.spent.Coins() != b.N {
		b.Fatalf("%d coins recorded for %d calls", srv.spent.Coins(), b.N)
	}
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
