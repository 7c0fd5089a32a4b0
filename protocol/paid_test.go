package protocol

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// The paid-call tests run the same cases over loopback TCP and QUIC with
// real libp2p hosts.

// TestPaidStorage walks every storage call through a paying client: a
// share is allocated, written, closed, listed, read and its lease
// extended; each paid call is paid up front, exactly, and its coins
// recorded once.
func TestPaidStorage(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			m := mint(t)
			srv := newTestServer(t, serverConfig{addr: tr.addr})
			wallet := newTestWallet(m.good.purse(t, 16, 4, srv.designation()))
			start := wallet.left()
			pc := NewPaidClient(newClientHost(t, srv.host), wallet)
			sc := NewStorageClient(pc)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			server := srv.host.ID()

			v, err := sc.Version(ctx, server)
			if err != nil || v.Protocols[0] != StorageID || v.AvailableSpace != 1<<30 {
				t.Fatalf("version: %v %v", v, err)
			}
			sched, err := sc.Prices(ctx, server)
			if err != nil || sched.ID() != srv.sched.ID() || pc.Schedule(server) != sched {
				t.Fatalf("prices: %v", err)
			}

			var si [StorageIndexSize]byte
			si[0] = 7
			data := bytes.Repeat([]byte("scrip"), 1000)
			alloc := &pb.Allocate{StorageIndex: si[:], ShareNumbers: []uint32{0, 1}, AllocatedSize: uint64(len(data)), LeaseSeconds: 86400}
			ar, err := sc.Allocate(ctx, server, alloc)
			if err != nil || len(ar.Allocated) != 2 {
				t.Fatalf("allocate: %v %v", ar, err)
			}
			for _, n := range []uint32{0, 1} {
				if err := sc.Write(ctx, server, &pb.Write{StorageIndex: si[:], ShareNumber: n, Data: data}); err != nil {
					t.Fatalf("write: %v", err)
				}
				if err := sc.Close(ctx, server, &pb.Close{StorageIndex: si[:], ShareNumber: n}); err != nil {
					t.Fatalf("close: %v", err)
				}
			}
			shares, err := sc.List(ctx, server, &pb.List{StorageIndex: si[:]})
			if err != nil || len(shares) != 2 || shares[1].Size != uint64(len(data)) {
				t.Fatalf("list: %v %v", shares, err)
			}
			got, err := sc.Read(ctx, server, &pb.Read{StorageIndex: si[:], ShareNumber: 1, Offset: 5, Length: 4096})
			if err != nil || !bytes.Equal(got, data[5:5+4096]) {
				t.Fatalf("read: %d bytes, %v", len(got), err)
			}
			until, err := sc.AddLease(ctx, server, &pb.AddLease{StorageIndex: si[:], LeaseSeconds: 3600}, 2*uint64(len(data)))
			if err != nil || until == 0 {
				t.Fatalf("add lease: %v", err)
			}
			if err := sc.AdviseCorrupt(ctx, server, &pb.AdviseCorrupt{StorageIndex: si[:], ShareNumber: 1, Reason: "bad hash"}); err != nil || len(srv.backend.Advice()) != 1 {
				t.Fatalf("advise: %v", err)
			}

			// Four paid calls, each paid once, exactly.
			held := 2 * uint64(len(data))
			quotes := []uint64{
				mustQuote(t, testRates, Usage{StoreBytes: held, StoreSeconds: 86400, WriteBytes: held}),
				mustQuote(t, testRates, Usage{}),
				mustQuote(t, testRates, Usage{ReadBytes: 4096}),
				mustQuote(t, testRates, Usage{StoreBytes: held, StoreSeconds: 3600}),
			}
			var total uint64
			for _, q := range quotes {
				total += q
			}
			if n := wallet.count(OutcomeSpent); n != 4 || wallet.count(OutcomeRefused)+wallet.count(OutcomeUnknown) != 0 {
				t.Fatalf("outcomes %v", wallet.outcomes)
			}
			if srv.spent.Requests() != 4 {
				t.Fatalf("%d requests recorded", srv.spent.Requests())
			}
			var recorded uint64
			var pubs [][32]byte
			for _, sc := range srv.spent.Spends() {
				recorded += sc.Spend.Amount
				pubs = append(pubs, sc.Spend.Pub)
			}
			if recorded != total || srv.spent.Coins() != start-wallet.left() {
				t.Fatalf("recorded %d in %d coins, quotes %d, wallet paid %d coins", recorded, srv.spent.Coins(), total, start-wallet.left())
			}
			// CoinStatus tells what the server recorded.
			pubs = append(pubs, [32]byte{1})
			st, err := sc.CoinStatus(ctx, server, pubs)
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range st {
				want := pb.CoinState_COIN_RECORDED
				if i == len(st)-1 {
					want = pb.CoinState_COIN_UNKNOWN
				}
				if c.State != want {
					t.Fatalf("coin %d: %v", i, c.State)
				}
			}
		})
	}
}

// TestPaidStaleSchedule: a client paying under a schedule that has expired
// at the server gets PAYMENT_REQUIRED with the new schedule, its policy
// accepts, it pays again with the same coins and succeeds. A client that
// knows no schedule quotes first, then pays.
func TestPaidStaleSchedule(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			m := mint(t)
			srv := newTestServer(t, serverConfig{addr: tr.addr})
			si := srv.share(t, 8192, 'x')
			wallet := newTestWallet(m.good.purse(t, 6, 2, srv.designation()))
			var offers []*Offer
			policy := func(ctx context.Context, o *Offer) error {
				offers = append(offers, o)
				return PayComputed(ctx, o)
			}
			pc := NewPaidClient(newClientHost(t, srv.host), wallet, WithPaymentPolicy(policy))
			sc := NewStorageClient(pc)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			read := &pb.Read{StorageIndex: si[:], Length: 4096}

			// No schedule known: quote, then pay.
			if _, err := sc.Read(ctx, srv.host.ID(), read); err != nil {
				t.Fatal(err)
			}
			if len(offers) != 1 || offers[0].Schedule.ID() != srv.sched.ID() || offers[0].Quote != 8 || offers[0].Computed != 8 ||
				!errors.Is(offers[0].Reason, ErrPaymentRequired) || offers[0].Message == "" {
				t.Fatalf("offers %+v", offers)
			}
			// Known and valid: paid up front, no offer.
			if _, err := sc.Read(ctx, srv.host.ID(), read); err != nil || len(offers) != 1 {
				t.Fatalf("up front: %v, %d offers", err, len(offers))
			}

			// The server moves on: new prices, and the old schedule expires
			// on its clock (the client's clock lags).
			rates := testRates
			rates.PerCall = 12
			next := srv.publish(t, rates, 3*time.Hour)
			srv.clock.advance(2 * time.Hour)
			if _, err := sc.Read(ctx, srv.host.ID(), read); err != nil {
				t.Fatal(err)
			}
			if len(offers) != 2 || offers[1].Schedule.ID() != next.ID() || offers[1].Quote != 16 || pc.Schedule(srv.host.ID()).ID() != next.ID() {
				t.Fatalf("offer %+v", offers[1])
			}
			if wallet.count(OutcomeRefused) != 1 || wallet.count(OutcomeSpent) != 3 {
				t.Fatalf("outcomes %v", wallet.outcomes)
			}

			// A policy that gives up.
			gaveUp := errors.New("too dear")
			pc2 := NewPaidClient(pc.Host(), wallet, WithPaymentPolicy(func(context.Context, *Offer) error { return gaveUp }))
			if _, err := NewStorageClient(pc2).Read(ctx, srv.host.ID(), read); !errors.Is(err, gaveUp) {
				t.Fatalf("got %v", err)
			}
			if srv.spent.Requests() != 3 {
				t.Fatalf("%d requests recorded", srv.spent.Requests())
			}
		})
	}
}

// TestPaidRetry: a retry with the same request ID and body gets the same
// answer and the coins are recorded once; the same ID with another body is
// a bad request; a lost answer is retried by the client transparently;
// coins of a call that failed after payment are credit for its retry.
func TestPaidRetry(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			m := mint(t)
			var dropNext atomic.Bool
			var flaky *flakyBackend
			srv := newTestServer(t, serverConfig{addr: tr.addr, backend: func(b *MemBackend) StorageBackend {
				flaky = &flakyBackend{MemBackend: b}
				return flaky
			}})
			// Drop the first answer of a stream when asked: the server has
			// recorded the coins and the answer, the client never sees it.
			srv.host.SetStreamHandler(StorageID, func(s network.Stream) {
				if dropNext.CompareAndSwap(true, false) {
					s = &dropWrites{Stream: s}
				}
				NewStreamHandler(StorageID, srv.storage.Handler())(s)
			})
			si := srv.share(t, 8192, 'y')
			client := newClientHost(t, srv.host)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			call := func(req *pb.Request) ([]byte, error) {
				resp, err := Call(ctx, client, srv.host.ID(), StorageID, req)
				if err != nil {
					return nil, err
				}
				return resp.Body, nil
			}

			// Same ID, same body, same spends: the same answer, charged once.
			coins := m.good.withdraw(t, 3, 8, srv.designation())
			list := &pb.StorageRequest{Op: &pb.StorageRequest_List{List: &pb.List{StorageIndex: si[:]}}}
			id := newRequestID()
			req, _ := rawPaid{op: list, id: id, sched: srv.sched, coins: coins[:1], signFor: srv.host.ID()}.request(t)
			first, err := call(req)
			if err != nil {
				t.Fatal(err)
			}
			again, err := call(req)
			if err != nil || !bytes.Equal(first, again) {
				t.Fatalf("retry: %v", err)
			}
			// Without the spends too.
			again, err = call(&pb.Request{Body: req.Body})
			if err != nil || !bytes.Equal(first, again) {
				t.Fatalf("retry without spends: %v", err)
			}
			if srv.spent.Coins() != 1 || srv.spent.Requests() != 1 {
				t.Fatalf("%d coins, %d requests", srv.spent.Coins(), srv.spent.Requests())
			}
			// Same ID, another body.
			other, _ := rawPaid{op: readOp(si, 4096), id: id, sched: srv.sched, coins: coins[1:2], signFor: srv.host.ID()}.request(t)
			if _, err := call(other); !errors.Is(err, ErrBadRequest) {
				t.Fatalf("got %v", err)
			}
			if srv.spent.Coins() != 1 {
				t.Fatal("the other body's coin was recorded")
			}

			// A lost answer: the client sends the request again and gets
			// the recorded answer.
			wallet := newTestWallet(m.good.withdraw(t, 2, 8, srv.designation()))
			sc := NewStorageClient(NewPaidClient(client, wallet))
			sc.Paid().SetSchedule(srv.sched)
			dropNext.Store(true)
			data, err := sc.Read(ctx, srv.host.ID(), &pb.Read{StorageIndex: si[:], Length: 4096})
			if err != nil || len(data) != 4096 || dropNext.Load() {
				t.Fatalf("read after a lost answer: %v", err)
			}
			if wallet.left() != 1 || wallet.count(OutcomeSpent) != 1 || srv.spent.Coins() != 2 {
				t.Fatalf("wallet %d left %v; %d coins recorded", wallet.left(), wallet.outcomes, srv.spent.Coins())
			}

			// A call that fails after payment: INTERNAL, and the coins are
			// credit for the same request.
			alloc := &pb.StorageRequest{Op: &pb.StorageRequest_Allocate{Allocate: &pb.Allocate{
				StorageIndex: make([]byte, 16), ShareNumbers: []uint32{3}, AllocatedSize: 1000, LeaseSeconds: 60}}}
			price := mustQuote(t, testRates, Usage{StoreBytes: 1000, StoreSeconds: 60, WriteBytes: 1000})
			paying, _ := pick(t, m.good.purse(t, 4, 1, srv.designation()), price)
			req, _ = rawPaid{op: alloc, sched: srv.sched, coins: paying, signFor: srv.host.ID()}.request(t)
			flaky.failAllocate.Store(true)
			if _, err := call(req); !errors.Is(err, ErrInternal) || OutcomeOf(err) != OutcomeUnknown {
				t.Fatalf("got %v", err)
			}
			recorded := srv.spent.Coins()
			body, err := call(&pb.Request{Body: req.Body})
			if err != nil {
				t.Fatalf("retry on credit: %v", err)
			}
			out := new(pb.StorageResponse)
			if proto.Unmarshal(body, out) != nil || len(out.GetAllocate().GetAllocated()) != 1 || srv.spent.Coins() != recorded {
				t.Fatalf("retry on credit: %v, %d coins", out, srv.spent.Coins())
			}
		})
	}
}

// flakyBackend fails one Allocate when asked, after its check passed.
type flakyBackend struct {
	*MemBackend
	failAllocate atomic.Bool
}

func (f *flakyBackend) Allocate(ctx context.Context, a *Allocation) (*Allocated, error) {
	if f.failAllocate.CompareAndSwap(true, false) {
		return nil, errors.New("disk on fire")
	}
	return f.MemBackend.Allocate(ctx, a)
}

// dropWrites is a stream whose writes fail: the server's answer is lost.
type dropWrites struct{ network.Stream }

func (d *dropWrites) Write([]byte) (int, error) { return 0, errors.New("dropped") }

// TestPaidRejections: every way to pay wrongly is refused with its own
// error, and nothing is recorded.
func TestPaidRejections(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			testPaidRejections(t, tr.addr)
		})
	}
}

func testPaidRejections(t *testing.T, addr string) {
	m := mint(t)
	a := newTestServer(t, serverConfig{addr: addr, capacity: 1 << 20,
		paywall: []PaywallOption{WithDepositPolicy(NewBearerCap(16, nil))}})
	b := newTestServer(t, serverConfig{addr: addr})
	si := a.share(t, 8192, 'z')
	client := newClientHost(t, a.host)
	connect(t, client, b.host)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	des := a.designation()
	coins := m.good.withdraw(t, 16, 8, des)
	bearer := m.good.withdraw(t, 4, 8, [32]byte{})
	next := func() testCoin { c := coins[0]; coins = coins[1:]; return c }
	read := readOp(si, 4096) // costs 8

	send := func(s *testServer, r rawPaid) error {
		t.Helper()
		req, _ := r.request(t)
		_, err := Call(ctx, client, s.host.ID(), StorageID, req)
		return err
	}
	unchanged := func(s *testServer, want int) {
		t.Helper()
		if got := s.spent.Coins(); got != want {
			t.Fatalf("%d coins recorded, want %d", got, want)
		}
	}

	// One good call, for reference.
	spentCoin := next()
	if err := send(a, rawPaid{op: read, sched: a.sched, coins: []testCoin{spentCoin}, signFor: a.host.ID()}); err != nil {
		t.Fatal(err)
	}
	unchanged(a, 1)

	tamperSpendSig := func(s *coin.Spend) { s.SpendSig[5] ^= 0x10 }
	tamperMintSig := func(s *coin.Spend) { s.Sig[40] ^= 0x01 }
	expired := m.expired.withdraw(t, 1, 8, des)
	unknown := m.unknown.withdraw(t, 1, 8, des)
	revoked := m.revoked.withdraw(t, 1, 8, des)
	toB := m.good.withdraw(t, 1, 8, b.designation())
	small := m.good.withdraw(t, 1, 4, des)
	bigAlloc := &pb.StorageRequest{Op: &pb.StorageRequest_Allocate{Allocate: &pb.Allocate{
		StorageIndex: make([]byte, 16), ShareNumbers: []uint32{0, 1}, AllocatedSize: 1 << 20, LeaseSeconds: 60}}}
	bigPrice := mustQuote(t, testRates, Usage{StoreBytes: 2 << 20, StoreSeconds: 60, WriteBytes: 2 << 20})
	bigCoins, _ := pick(t, m.good.purse(t, 12, 1, des), bigPrice)

	tests := []struct {
		name   string
		server *testServer
		r      rawPaid
		want   error
	}{
		{"double spend", a, rawPaid{op: read, sched: a.sched, coins: []testCoin{spentCoin}, signFor: a.host.ID()}, ErrDoubleSpend},
		{"spend for A at B", b, rawPaid{op: readOp(b.share(t, 8192, 'b'), 4096), sched: b.sched, coins: bearer[:1], signFor: a.host.ID()}, ErrInvalidCoin},
		{"spend for X on Y", a, rawPaid{op: read, sched: a.sched, coins: []testCoin{next()}, signFor: a.host.ID(), signBody: []byte("request X")}, ErrInvalidCoin},
		{"tweaked spend signature", a, rawPaid{op: read, sched: a.sched, coins: []testCoin{next()}, signFor: a.host.ID(), tamper: tamperSpendSig}, ErrInvalidCoin},
		{"tweaked mint signature", a, rawPaid{op: read, sched: a.sched, coins: []testCoin{next()}, signFor: a.host.ID(), tamper: tamperMintSig}, ErrInvalidCoin},
		{"unknown keyset", a, rawPaid{op: read, sched: a.sched, coins: unknown, signFor: a.host.ID()}, ErrUnknownKeyset},
		{"expired keyset", a, rawPaid{op: read, sched: a.sched, coins: expired, signFor: a.host.ID()}, ErrExpiredKeyset},
		{"revoked keyset", a, rawPaid{op: read, sched: a.sched, coins: revoked, signFor: a.host.ID()}, ErrRevokedKeyset},
		{"too little", a, rawPaid{op: read, sched: a.sched, coins: small, signFor: a.host.ID()}, ErrInsufficientPayment},
		{"designated to another server", a, rawPaid{op: read, sched: a.sched, coins: toB, signFor: a.host.ID()}, ErrInvalidCoin},
		{"no space", a, rawPaid{op: bigAlloc, sched: a.sched, coins: bigCoins, signFor: a.host.ID()}, ErrNoSpace},
		{"no payment", a, rawPaid{op: read, sched: a.sched, signFor: a.host.ID()}, ErrPaymentRequired},
		{"unknown schedule", a, rawPaid{op: read, sched: b.sched, coins: []testCoin{next()}, signFor: a.host.ID()}, ErrPaymentRequired},
		{"no such share", a, rawPaid{op: readOp([16]byte{9}, 4096), sched: a.sched, coins: []testCoin{next()}, signFor: a.host.ID()}, ErrNotFound},
		{"bearer coins over the cap", a, rawPaid{op: readOp(si, 4096*5), sched: a.sched, coins: bearer[1:4], signFor: a.host.ID()}, ErrRateLimited},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.server.spent.Coins()
			err := send(tc.server, tc.r)
			e := wantErr(t, err, tc.want)
			unchanged(tc.server, before)
			if OutcomeOf(err) != OutcomeRefused {
				t.Fatalf("outcome %v", OutcomeOf(err))
			}
			switch tc.want {
			case ErrPaymentRequired, ErrInsufficientPayment:
				if e.Payment == nil || e.Payment.Quote != 8 || e.Payment.Schedule.ID() != a.sched.ID() {
					t.Fatalf("payment %+v", e.Payment)
				}
			case ErrDoubleSpend:
				if e.Message == "" {
					t.Fatal("the double spend names no coin")
				}
			}
			t.Logf("%v", err)
		})
	}
	// The coins refused for bad signatures quarantined the client.
	if !a.pw.Verifier().Quarantined(client.ID()) {
		t.Fatal("the client sent bad spends and is not quarantined")
	}
}
