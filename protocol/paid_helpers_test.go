package protocol

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// Test fixtures for paid calls: a mint's keysets, coins withdrawn from
// them through the real blind issuance (about 0.3 ms of CPU each, so they
// are made in parallel and only as many as a test needs), a wallet, and a
// storage server on a real libp2p host.

var transports = []struct{ name, addr string }{
	{"tcp", "/ip4/127.0.0.1/tcp/0"},
	{"quic", "/ip4/127.0.0.1/udp/0/quic-v1"},
}

// testMint holds keysets made once per test binary: good is accepted by
// the test servers; expired is past its spend window; unknown is never
// given to a server; revoked is given and revoked.
type testMint struct {
	good, expired, unknown, revoked *mintKeyset
}

type mintKeyset struct {
	ks  *coin.Keyset
	sec *coin.KeysetSecret
	// issueAt is a time inside the issue window.
	issueAt time.Time
}

var (
	mintOnce sync.Once
	theMint  *testMint
)

func mint(t testing.TB) *testMint {
	t.Helper()
	mintOnce.Do(func() {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		now := time.Now()
		mk := func(notBefore, spendUntil time.Time) *mintKeyset {
			ks, sec, err := coin.GenerateKeyset(rand.Reader, key, coin.KeysetParams{
				Unit:         "msat",
				Exponents:    []uint8{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
				NotBefore:    notBefore,
				IssueUntil:   spendUntil,
				SpendUntil:   spendUntil,
				DepositUntil: spendUntil.Add(24 * time.Hour),
			})
			if err != nil {
				panic(err)
			}
			return &mintKeyset{ks: ks, sec: sec, issueAt: notBefore.Add(time.Minute)}
		}
		theMint = &testMint{
			good:    mk(now.Add(-time.Hour), now.Add(30*24*time.Hour)),
			expired: mk(now.Add(-3*time.Hour), now.Add(-time.Hour)),
			unknown: mk(now.Add(-time.Hour), now.Add(30*24*time.Hour)),
			revoked: mk(now.Add(-time.Hour), now.Add(30*24*time.Hour)),
		}
	})
	return theMint
}

// keysets returns what a test server accepts: good, expired and revoked
// (revoked).
func (m *testMint) keysets(t testing.TB) *KeysetList {
	t.Helper()
	l, err := NewKeysetList(m.good.ks, m.expired.ks, m.revoked.ks)
	if err != nil {
		t.Fatal(err)
	}
	l.Revoke(m.revoked.ks.ID())
	return l
}

// testCoin is a coin with its private key.
type testCoin struct {
	c   *coin.Coin
	key ed25519.PrivateKey
}

func (c testCoin) spend(t testing.TB, server peer.ID, digest [DigestSize]byte) *coin.Spend {
	t.Helper()
	s, err := coin.NewSpend(c.c, c.key, []byte(server), digest)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// withdraw makes n coins of amount from mk, designated to des (zero for
// bearer coins), in parallel on every CPU.
func (mk *mintKeyset) withdraw(t testing.TB, n int, amount uint64, des [32]byte) []testCoin {
	t.Helper()
	signer, err := mk.sec.Signer(amount)
	if err != nil {
		t.Fatal(err)
	}
	var seed [32]byte
	rand.Read(seed[:])
	out := make([]testCoin, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, runtime.GOMAXPROCS(0))
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				w, err := coin.NewWithdrawal(&seed, uint64(i), mk.ks, amount, des)
				if err == nil {
					var c0, c1 [32]byte
					c0, c1, err = w.Challenges(signer.Begin(w.Nonce()))
					if err == nil {
						var row coin.Row
						row, err = signer.Finish(mk.issueAt, w.Nonce(), c0, c1)
						if err == nil {
							var c *coin.Coin
							c, err = w.Finish(row.Answer())
							out[i] = testCoin{c: c, key: w.CoinKey()}
						}
					}
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return out
}

// purse returns coins of every denomination 1 to 2^maxExp, count of each,
// designated to des.
func (mk *mintKeyset) purse(t testing.TB, maxExp uint8, count int, des [32]byte) []testCoin {
	t.Helper()
	var out []testCoin
	for e := uint8(0); e <= maxExp; e++ {
		out = append(out, mk.withdraw(t, count, 1<<e, des)...)
	}
	return out
}

// testWallet is a [Payer] over a fixed set of coins, kept by amount. A
// refused coin goes back to the wallet (the tests use one server per
// wallet); a spent or unknown one does not.
type testWallet struct {
	mu       sync.Mutex
	coins    map[uint64][]testCoin
	n        int
	reserved map[[32]byte]testCoin
	outcomes map[Outcome]int
}

var _ Payer = (*testWallet)(nil)

func newTestWallet(coins []testCoin) *testWallet {
	w := &testWallet{coins: make(map[uint64][]testCoin), reserved: make(map[[32]byte]testCoin), outcomes: make(map[Outcome]int)}
	for _, c := range coins {
		w.put(c)
	}
	return w
}

func (w *testWallet) put(c testCoin) {
	w.coins[c.c.Amount] = append(w.coins[c.c.Amount], c)
	w.n++
}

// Pay takes the largest coins first, as coin.Select does.
func (w *testWallet) Pay(ctx context.Context, server peer.ID, requestID []byte, unit string, amount uint64, digest [DigestSize]byte) ([]*coin.Spend, error) {
	w.mu.Lock()
	var picked []testCoin
	rest := amount
	for e := 63; e >= 0 && rest > 0; e-- {
		a := uint64(1) << e
		for rest >= a && len(w.coins[a]) > 0 {
			cs := w.coins[a]
			picked = append(picked, cs[len(cs)-1])
			w.coins[a] = cs[:len(cs)-1]
			w.n--
			rest -= a
		}
	}
	if rest != 0 {
		for _, c := range picked {
			w.put(c)
		}
		w.mu.Unlock()
		return nil, fmt.Errorf("%w: %d of %d left over", coin.ErrNoExactChange, rest, amount)
	}
	for _, c := range picked {
		w.reserved[c.c.Pub] = c
	}
	w.mu.Unlock()
	out := make([]*coin.Spend, len(picked))
	for i, c := range picked {
		s, err := coin.NewSpend(c.c, c.key, []byte(server), digest)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

func (w *testWallet) Settle(ctx context.Context, server peer.ID, requestID []byte, spends []*coin.Spend, outcome Outcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.outcomes[outcome]++
	for _, s := range spends {
		c, ok := w.reserved[s.Pub]
		if !ok {
			panic("settled a coin the wallet did not pay")
		}
		delete(w.reserved, s.Pub)
		if outcome == OutcomeRefused {
			w.put(c)
		}
	}
}

func (w *testWallet) count(o Outcome) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.outcomes[o]
}

func (w *testWallet) left() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// testClock is a clock that tests move forward.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// Test prices: a 4 KiB Read costs 4 + 4 = 8, one coin.
var testRates = Rates{PerCall: 4, ReadPerGiB: 1 << 20, StorePerGiBMonth: 1 << 20, WritePerGiB: 1 << 20}

// testServer is a storage server on a real libp2p host.
type testServer struct {
	host    host.Host
	clock   *testClock
	book    *PriceBook
	sched   *SignedSchedule
	spent   *MemSpentStore
	backend *MemBackend
	pw      *Paywall
	storage *StorageServer
}

type serverConfig struct {
	addr      string
	key       crypto.PrivKey
	rates     Rates
	free      bool // all rates zero
	capacity  uint64
	limits    map[string]ProtocolLimits
	paywall   []PaywallOption
	handler   []HandlerOption
	keysets   coin.Keysets
	wrap      func(Handler) Handler
	backend   func(*MemBackend) StorageBackend
	noCleanup bool
}

func newTestServer(t testing.TB, cfg serverConfig) *testServer {
	t.Helper()
	if cfg.capacity == 0 {
		cfg.capacity = 1 << 30
	}
	if cfg.rates == (Rates{}) && !cfg.free {
		cfg.rates = testRates
	}
	rm, err := NewResourceManager(cfg.limits)
	if err != nil {
		t.Fatal(err)
	}
	opts := []libp2p.Option{libp2p.ListenAddrStrings(cfg.addr), libp2p.ResourceManager(rm)}
	if cfg.key != nil {
		opts = append(opts, libp2p.Identity(cfg.key))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.noCleanup {
		t.Cleanup(func() { h.Close() })
	}
	s := &testServer{host: h, clock: new(testClock), book: NewPriceBook(), spent: NewMemSpentStore()}
	s.sched = s.publish(t, cfg.rates, time.Hour)
	s.backend = NewMemBackend(cfg.capacity, 1<<30, s.clock.now)
	keysets := cfg.keysets
	if keysets == nil {
		keysets = mint(t).keysets(t)
	}
	s.pw = NewPaywall(h.ID(), s.book, keysets, s.spent, append([]PaywallOption{WithPaywallClock(s.clock.now)}, cfg.paywall...)...)
	var backend StorageBackend = s.backend
	if cfg.backend != nil {
		backend = cfg.backend(s.backend)
	}
	s.storage = NewStorageServer(backend, s.pw)
	handler := s.storage.Handler()
	if cfg.wrap != nil {
		handler = cfg.wrap(handler)
	}
	h.SetStreamHandler(StorageID, NewStreamHandler(StorageID, handler, cfg.handler...))
	return s
}

// publish signs and publishes a schedule valid from a minute ago (on the
// server's clock) for d.
func (s *testServer) publish(t testing.TB, r Rates, d time.Duration) *SignedSchedule {
	t.Helper()
	now := s.clock.now()
	ss, err := SignSchedule(s.host.Peerstore().PrivKey(s.host.ID()), Schedule{
		Server: s.host.ID(), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(d), Unit: "msat", Rates: r,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.book.Publish(ss, "prices of "+now.Format(time.TimeOnly))
	return ss
}

func (s *testServer) designation() [32]byte { return coin.Designation([]byte(s.host.ID())) }

// share puts a closed share of size bytes, filled with b, at the server
// and returns its storage index.
func (s *testServer) share(t testing.TB, size int, b byte) [StorageIndexSize]byte {
	t.Helper()
	var si [StorageIndexSize]byte
	rand.Read(si[:])
	ctx := context.Background()
	writer := peer.ID("local")
	if _, err := s.backend.Allocate(ctx, &Allocation{Writer: writer, StorageIndex: si, Shares: []uint32{0}, Size: uint64(size), Lease: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = b
	}
	if err := s.backend.Write(ctx, writer, si, 0, 0, data); err != nil {
		t.Fatal(err)
	}
	if err := s.backend.Close(ctx, writer, si, 0); err != nil {
		t.Fatal(err)
	}
	return si
}

// newClientHost starts a libp2p host that listens nowhere and connects it
// to server.
func newClientHost(t testing.TB, server host.Host) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	connect(t, h, server)
	return h
}

// rawPaid builds a paid storage request by hand: op with the given request
// ID and schedule, and the spends of coins signed for signFor and the
// digest of signBody (the request's own body if nil).
type rawPaid struct {
	op       *pb.StorageRequest
	id       []byte
	sched    *SignedSchedule
	coins    []testCoin
	signFor  peer.ID
	signBody []byte
	tamper   func(*coin.Spend)
}

func (r rawPaid) request(t testing.TB) (*pb.Request, [DigestSize]byte) {
	t.Helper()
	op := proto.Clone(r.op).(*pb.StorageRequest)
	op.RequestId = r.id
	if op.RequestId == nil {
		op.RequestId = newRequestID()
	}
	if r.sched != nil {
		id := r.sched.ID()
		op.ScheduleId = id[:]
	}
	body, err := proto.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	signBody := r.signBody
	if signBody == nil {
		signBody = body
	}
	digest := RequestDigest(StorageID, signBody)
	req := &pb.Request{Body: body}
	for _, c := range r.coins {
		s := c.spend(t, r.signFor, digest)
		if r.tamper != nil {
			r.tamper(s)
		}
		req.Spends = append(req.Spends, s.Bytes())
	}
	return req, RequestDigest(StorageID, body)
}

func readOp(si [StorageIndexSize]byte, length uint64) *pb.StorageRequest {
	return &pb.StorageRequest{Op: &pb.StorageRequest_Read{Read: &pb.Read{StorageIndex: si[:], Length: length}}}
}

func mustQuote(t testing.TB, r Rates, u Usage) uint64 {
	t.Helper()
	q, err := Quote(r, u)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// pick returns coins from cs summing to amount exactly, and the rest.
func pick(t testing.TB, cs []testCoin, amount uint64) (picked, rest []testCoin) {
	t.Helper()
	amounts := make([]uint64, len(cs))
	for i, c := range cs {
		amounts[i] = c.c.Amount
	}
	idx, err := coin.Select(amounts, amount)
	if err != nil {
		t.Fatal(err)
	}
	in := make(map[int]bool)
	for _, i := range idx {
		picked = append(picked, cs[i])
		in[i] = true
	}
	for i, c := range cs {
		if !in[i] {
			rest = append(rest, c)
		}
	}
	return picked, rest
}

func wantErr(t testing.TB, err, want error) *Error {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%v is not an answer", err)
	}
	return e
}

func (s *testServer) String() string { return fmt.Sprintf("server %s", s.host.ID()) }
