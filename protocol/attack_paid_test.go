package protocol

// Attacks on the paid-call path, by an outside reviewer. Every test states
// a defence and asserts that it holds: a test that fails is an attack that
// worked. Each test says which.

import (
	"bytes"
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

	"filippo.io/edwards25519"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// atkTCP is the transport of these tests: one is enough, the attacks are
// above the transport.
var atkTCP = transports[0].addr

func atkCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// atkPool is a set of coins a test pays from, exactly.
type atkPool struct {
	t     testing.TB
	coins []testCoin
}

func (p *atkPool) take(amount uint64) []testCoin {
	p.t.Helper()
	picked, rest := pick(p.t, p.coins, amount)
	p.coins = rest
	return picked
}

// atkPay sends op to srv from client, paid exactly (held prices an
// AddLease), and returns the answer body, the price paid and the error.
func atkPay(t *testing.T, ctx context.Context, client host.Host, srv *testServer, op *pb.StorageRequest, held uint64, pool *atkPool) ([]byte, uint64, error) {
	t.Helper()
	u, paid, err := StorageUsage(op, held)
	if err != nil || !paid {
		t.Fatalf("usage: %v %v", paid, err)
	}
	price := mustQuote(t, srv.sched.Rates, u)
	req, _ := rawPaid{op: op, sched: srv.sched, coins: pool.take(price), signFor: srv.host.ID()}.request(t)
	resp, err := Call(ctx, client, srv.host.ID(), StorageID, req)
	if err != nil {
		return nil, price, err
	}
	return resp.Body, price, nil
}

// atkFree sends a free operation.
func atkFree(t *testing.T, ctx context.Context, client host.Host, srv *testServer, op *pb.StorageRequest) error {
	t.Helper()
	body, err := proto.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Call(ctx, client, srv.host.ID(), StorageID, &pb.Request{Body: body})
	return err
}

func allocOp(si [StorageIndexSize]byte, size, lease uint64, shares ...uint32) *pb.StorageRequest {
	return &pb.StorageRequest{Op: &pb.StorageRequest_Allocate{Allocate: &pb.Allocate{
		StorageIndex: si[:], ShareNumbers: shares, AllocatedSize: size, LeaseSeconds: lease}}}
}

func writeOp(si [StorageIndexSize]byte, n uint32, off uint64, data []byte) *pb.StorageRequest {
	return &pb.StorageRequest{Op: &pb.StorageRequest_Write{Write: &pb.Write{StorageIndex: si[:], ShareNumber: n, Offset: off, Data: data}}}
}

func closeOp(si [StorageIndexSize]byte, n uint32) *pb.StorageRequest {
	return &pb.StorageRequest{Op: &pb.StorageRequest_Close{Close: &pb.Close{StorageIndex: si[:], ShareNumber: n}}}
}

// leaseEnd returns the lease end of a closed share, or of an open one.
func leaseEnd(t *testing.T, srv *testServer, si [StorageIndexSize]byte, n uint32) time.Time {
	t.Helper()
	srv.backend.mu.Lock()
	defer srv.backend.mu.Unlock()
	sh, ok := srv.backend.shares[memShareKey{si, n}]
	if !ok {
		t.Fatalf("no share %d", n)
	}
	return sh.expires
}

// atkTorsion is the point of order 2 of edwards25519, (0, −1).
var atkTorsion = func() *edwards25519.Point {
	enc := bytes.Repeat([]byte{0xff}, 32)
	enc[0], enc[31] = 0xec, 0x7f
	p, err := new(edwards25519.Point).SetBytes(enc)
	if err != nil {
		panic(err)
	}
	return p
}()

// torsionRoot gives a spend another encoding of the same coin: its root
// plus the point of order 2, so that [8]root is still the coin key. No
// signature covers the root.
func torsionRoot(s *coin.Spend) {
	q, err := new(edwards25519.Point).SetBytes(s.Root[:])
	if err != nil {
		panic(err)
	}
	copy(s.Root[:], new(edwards25519.Point).Add(q, atkTorsion).Bytes())
}

// TestAttackAllocateRenewsHeldShareAtClaimedSize: Allocate is priced on
// the allocated_size the caller states, but extends the lease of every
// share the server already holds under the share numbers asked, whatever
// their real size. Claiming 1 byte renews a 1 MiB share (anyone's: leases
// have no secrets) for 100 years at the price of 1 byte; AddLease, priced
// on the bytes held, would cost about 178,000 times more. The same works
// on a share the caller allocated and has not closed yet.
//
// Defence claimed: a paid call is charged its usage. FAILS: the attack
// works.
func TestAttackAllocateRenewsHeldShareAtClaimedSize(t *testing.T) {
	m := mint(t)
	srv := newTestServer(t, serverConfig{addr: atkTCP})
	client := newClientHost(t, srv.host)
	ctx := atkCtx(t)
	pool := &atkPool{t: t, coins: m.good.purse(t, 12, 4, srv.designation())}
	const size = 1 << 20

	check := func(t *testing.T, si [StorageIndexSize]byte, before time.Time, paid uint64) {
		t.Helper()
		after := leaseEnd(t, srv, si, 0)
		granted := uint64(after.Sub(before) / time.Second)
		fair := mustQuote(t, testRates, Usage{StoreBytes: size, StoreSeconds: granted})
		t.Logf("paid %d; lease of the %d-byte share extended by %d s, worth %d under AddLease's pricing", paid, size, granted, fair)
		if granted > 0 && paid < fair {
			t.Errorf("a %d-byte share's lease was extended by %.1f years for %d units; the storage is worth %d",
				size, float64(granted)/(365*86400), paid, fair)
		}
	}

	t.Run("a closed share", func(t *testing.T) {
		si := srv.share(t, size, 'v') // closed, leased for a day
		before := leaseEnd(t, srv, si, 0)
		body, paid, err := atkPay(t, ctx, client, srv, allocOp(si, 1, MaxLeaseSeconds, 0), 0, pool)
		if err != nil {
			t.Logf("refused: %v", err)
			return
		}
		out := new(pb.StorageResponse)
		if err := proto.Unmarshal(body, out); err != nil || len(out.GetAllocate().GetAlreadyHave()) != 1 {
			t.Fatalf("answer %v %v", out, err)
		}
		check(t, si, before, paid)
	})

	t.Run("an open share of the caller's", func(t *testing.T) {
		var si [StorageIndexSize]byte
		rand.Read(si[:])
		if _, _, err := atkPay(t, ctx, client, srv, allocOp(si, size, 60, 0), 0, pool); err != nil {
			t.Fatal(err)
		}
		before := leaseEnd(t, srv, si, 0)
		_, paid, err := atkPay(t, ctx, client, srv, allocOp(si, 1, MaxLeaseSeconds, 0), 0, pool)
		if err != nil {
			t.Logf("refused: %v", err)
			return
		}
		if err := atkFree(t, ctx, client, srv, closeOp(si, 0)); err != nil {
			t.Fatal(err)
		}
		check(t, si, before, paid)
	})
}

// TestAttackAddLeasePricedBeforeServe: AddLease is priced on the size of
// the closed shares counted when the request is decoded, and serves by
// extending every closed share of the storage index at the time it is
// served. Between the two, the server may deposit bearer coins at the mint
// (BearerCap over its cap, here a deposit the test holds up, as a slow
// mint would), wait for its batch window, its group commit, or for another
// attempt with the same request ID. A caller that closes a large share of
// its own in that window has it kept for 100 years at the price of a
// 1-byte share. (A retry on credit after a failed Serve is served on
// today's shares too, at the price of the shares then.)
//
// Defence claimed: a paid call is charged its usage. FAILS: the attack
// works.
func TestAttackAddLeasePricedBeforeServe(t *testing.T) {
	m := mint(t)
	var armed atomic.Bool
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	deposit := func(ctx context.Context, _ [DigestSize]byte, _ []*coin.Spend) error {
		if armed.Load() {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil // the mint credited them
	}
	srv := newTestServer(t, serverConfig{addr: atkTCP,
		paywall: []PaywallOption{WithDepositPolicy(NewBearerCap(0, deposit))}})
	client := newClientHost(t, srv.host)
	ctx := atkCtx(t)
	pool := &atkPool{t: t, coins: m.good.purse(t, 11, 3, srv.designation())}
	bearer := &atkPool{t: t, coins: m.good.purse(t, 3, 1, [32]byte{})}
	var si [StorageIndexSize]byte
	rand.Read(si[:])

	// A 1-byte share, closed: what AddLease will be priced on.
	if _, _, err := atkPay(t, ctx, client, srv, allocOp(si, 1, 86400, 0), 0, pool); err != nil {
		t.Fatal(err)
	}
	if err := atkFree(t, ctx, client, srv, writeOp(si, 0, 0, []byte{1})); err != nil {
		t.Fatal(err)
	}
	if err := atkFree(t, ctx, client, srv, closeOp(si, 0)); err != nil {
		t.Fatal(err)
	}
	// A 1 MiB share for one minute, left open.
	const big = 1 << 20
	if _, _, err := atkPay(t, ctx, client, srv, allocOp(si, big, 60, 1), 0, pool); err != nil {
		t.Fatal(err)
	}

	// AddLease for 100 years, priced on 1 byte, paid with bearer coins.
	op := &pb.StorageRequest{Op: &pb.StorageRequest_AddLease{AddLease: &pb.AddLease{StorageIndex: si[:], LeaseSeconds: MaxLeaseSeconds}}}
	armed.Store(true)
	done := make(chan error, 1)
	var paid uint64
	go func() {
		var err error
		_, paid, err = atkPay(t, ctx, client, srv, op, 1, bearer)
		done <- err
	}()
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("AddLease ended before its deposit: %v", err)
	case <-ctx.Done():
		t.Fatal("timeout")
	}
	// Priced; now close the big share, then let the deposit finish.
	if err := atkFree(t, ctx, client, srv, closeOp(si, 1)); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Logf("AddLease refused: %v", err)
		return
	}
	end := leaseEnd(t, srv, si, 1)
	left := time.Until(end)
	fair := mustQuote(t, testRates, Usage{StoreBytes: big + 1, StoreSeconds: MaxLeaseSeconds})
	t.Logf("paid %d; the %d-byte share is now kept %.1f years; AddLease on both shares costs %d", paid, big, left.Hours()/24/365, fair)
	if left > time.Hour {
		t.Errorf("a %d-byte share closed after AddLease was priced is kept %.1f years, paid %d units instead of %d",
			big, left.Hours()/24/365, paid, fair)
	}
}

// TestAttackAddLeaseQuarantineWindow is TestAttackAddLeasePricedBeforeServe
// on a server with default settings and no mint: the attacker widens the
// window between pricing and serving itself. Two calls with a bad spend
// put it in quarantine, where each of its calls waits for its turn (100
// ms apart) after it was priced; a Close sent meanwhile on another stream
// lands inside the window.
//
// FAILS: the attack works (it depends on timing; a missed window skips).
func TestAttackAddLeaseQuarantineWindow(t *testing.T) {
	m := mint(t)
	srv := newTestServer(t, serverConfig{addr: atkTCP})
	client := newClientHost(t, srv.host)
	ctx := atkCtx(t)
	pool := &atkPool{t: t, coins: m.good.purse(t, 11, 3, srv.designation())}
	si := srv.share(t, 4096, 'q')
	var mine [StorageIndexSize]byte
	rand.Read(mine[:])
	if _, _, err := atkPay(t, ctx, client, srv, allocOp(mine, 1, 86400, 0), 0, pool); err != nil {
		t.Fatal(err)
	}
	if err := atkFree(t, ctx, client, srv, closeOp(mine, 0)); err != nil {
		t.Fatal(err)
	}
	const big = 1 << 20
	if _, _, err := atkPay(t, ctx, client, srv, allocOp(mine, big, 60, 1), 0, pool); err != nil {
		t.Fatal(err)
	}
	// Two bad spends: quarantined, and the next turn 100 ms away.
	for range 2 {
		bad, _ := rawPaid{op: readOp(si, 4096), sched: srv.sched, coins: pool.take(8), signFor: srv.host.ID(),
			tamper: func(s *coin.Spend) { s.SpendSig[3] ^= 1 }}.request(t)
		if _, err := Call(ctx, client, srv.host.ID(), StorageID, bad); !errors.Is(err, ErrInvalidCoin) {
			t.Fatalf("bad spend: %v", err)
		}
	}
	if !srv.pw.Verifier().Quarantined(client.ID()) {
		t.Fatal("not quarantined")
	}
	op := &pb.StorageRequest{Op: &pb.StorageRequest_AddLease{AddLease: &pb.AddLease{StorageIndex: mine[:], LeaseSeconds: MaxLeaseSeconds}}}
	done := make(chan error, 1)
	var paid uint64
	go func() {
		var err error
		_, paid, err = atkPay(t, ctx, client, srv, op, 1, pool)
		done <- err
	}()
	time.Sleep(40 * time.Millisecond)
	if err := atkFree(t, ctx, client, srv, closeOp(mine, 1)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Skipf("window missed: %v", err)
	}
	left := time.Until(leaseEnd(t, srv, mine, 1))
	if left < time.Hour {
		// Since the fix, AddLease extends only the shares it priced, so a
		// Close inside the window is not extended either: the defence
		// held, or the window was missed; both pass.
		t.Logf("the %d-byte share closed meanwhile is kept %v: not extended", big, left.Round(time.Second))
		return
	}
	t.Errorf("a %d-byte share closed after AddLease was priced is kept %.1f years for %d units", big, left.Hours()/24/365, paid)
}

// TestAttackReadReplayServesForFree: Read answers are not stored, so that
// a retry (same request ID, same body) runs the read again, free. Nothing
// bounds how often: one payment buys unlimited downloads of the range,
// each costing the server the read bandwidth it prices.
//
// Defence claimed: a retry is "never charged twice" and a Read is
// "charged for the length asked". FAILS: 1 payment, 17 reads served. (The
// spec allows it; it is still a way to be served without paying.)
func TestAttackReadReplayServesForFree(t *testing.T) {
	m := mint(t)
	srv := newTestServer(t, serverConfig{addr: atkTCP})
	si := srv.share(t, 64<<10, 'r')
	client := newClientHost(t, srv.host)
	ctx := atkCtx(t)
	pool := &atkPool{t: t, coins: m.good.purse(t, 8, 1, srv.designation())}
	const length = 64 << 10
	op := readOp(si, length)
	u, _, _ := StorageUsage(op, 0)
	price := mustQuote(t, testRates, u)
	req, _ := rawPaid{op: op, sched: srv.sched, coins: pool.take(price), signFor: srv.host.ID()}.request(t)
	if _, err := Call(ctx, client, srv.host.ID(), StorageID, req); err != nil {
		t.Fatal(err)
	}
	served := length
	replay := &pb.Request{Body: req.Body} // no spends
	for range 16 {
		resp, err := Call(ctx, client, srv.host.ID(), StorageID, replay)
		if err != nil {
			break
		}
		out := new(pb.StorageResponse)
		if proto.Unmarshal(resp.Body, out) == nil {
			served += len(out.GetRead().GetData())
		}
	}
	t.Logf("paid %d units once (%d coins recorded); %d bytes served for a %d-byte read", price, srv.spent.Coins(), served, length)
	if served > 2*length {
		t.Errorf("one payment for %d bytes was served %d bytes (%d reads)", length, served, served/length)
	}
}

// TestAttackRewriteIsFree: Write is free, "covered by the allocation",
// which charges allocated_size bytes of writing once. Nothing counts the
// bytes written: the writer may rewrite its open share for as long as its
// lease lasts, each Write up to 1 MiB of ingress and disk writes.
//
// Defence claimed: writing is paid by the allocation. FAILS (low
// severity): 16 times the allocated bytes are written for one payment.
func TestAttackRewriteIsFree(t *testing.T) {
	m := mint(t)
	srv := newTestServer(t, serverConfig{addr: atkTCP})
	client := newClientHost(t, srv.host)
	ctx := atkCtx(t)
	pool := &atkPool{t: t, coins: m.good.purse(t, 8, 1, srv.designation())}
	var si [StorageIndexSize]byte
	rand.Read(si[:])
	const size = 64 << 10
	if _, _, err := atkPay(t, ctx, client, srv, allocOp(si, size, 60, 0), 0, pool); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{'w'}, size)
	written := 0
	for range 16 {
		if err := atkFree(t, ctx, client, srv, writeOp(si, 0, 0, data)); err != nil {
			break
		}
		written += size
	}
	if written > 2*size {
		t.Errorf("an allocation paying %d bytes of writes took %d bytes of writes", size, written)
	}
}

// TestAttackSameCoinRaces: the same coin offered in many concurrent calls,
// under different request IDs and in different encodings (its root plus a
// point of order 2 is another valid encoding of the same coin key), from
// several peers, is recorded for exactly one call; the same coin twice in
// one call, in two encodings, is a bad request.
//
// HOLDS.
func TestAttackSameCoinRaces(t *testing.T) {
	m := mint(t)
	srv := newTestServer(t, serverConfig{addr: atkTCP})
	si := srv.share(t, 4096, 's')
	var clients []host.Host
	for range 4 {
		clients = append(clients, newClientHost(t, srv.host))
	}
	ctx := atkCtx(t)
	list := &pb.StorageRequest{Op: &pb.StorageRequest_List{List: &pb.List{StorageIndex: si[:]}}} // costs 4
	cs := m.good.withdraw(t, 2, 4, srv.designation())
	c := cs[0]

	// The other encoding verifies.
	d := [DigestSize]byte{1}
	alt := c.spend(t, srv.host.ID(), d)
	torsionRoot(alt)
	if bytes.Equal(alt.Root[:], c.c.Root[:]) {
		t.Fatal("the root did not change")
	}
	v := &coin.Verifier{Keysets: m.keysets(t), Server: []byte(srv.host.ID()), Window: coin.WindowSpend}
	if err := v.VerifySpend(alt, d, time.Now()); err != nil {
		t.Fatalf("the torsion encoding does not verify (%v): the attack needs it", err)
	}

	const n = 24
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		r := rawPaid{op: list, sched: srv.sched, coins: []testCoin{c}, signFor: srv.host.ID()}
		if i%2 == 1 {
			r.tamper = torsionRoot
		}
		req, _ := r.request(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = Call(ctx, clients[i%len(clients)], srv.host.ID(), StorageID, req)
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrDoubleSpend):
			t.Errorf("call %d: %v, want DOUBLE_SPEND", i, err)
		}
	}
	if ok != 1 || srv.spent.Coins() != 1 || srv.spent.Requests() != 1 {
		t.Fatalf("%d calls served, %d coins and %d requests recorded for one coin", ok, srv.spent.Coins(), srv.spent.Requests())
	}

	// Twice in one call, in two encodings.
	two := rawPaid{op: list, sched: srv.sched, coins: []testCoin{cs[1], cs[1]}, signFor: srv.host.ID()}
	req, _ := two.request(t)
	sp, _ := coin.ParseSpend(req.Spends[1])
	torsionRoot(sp)
	req.Spends[1] = sp.Bytes()
	if _, err := Call(ctx, clients[0], srv.host.ID(), StorageID, req); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("the same coin twice in one call: %v", err)
	}
	if srv.spent.Coins() != 1 {
		t.Fatal("recorded")
	}
}

// TestAttackUnitMismatch: coins of a keyset in another unit (worth other
// money) do not pay a schedule's prices, even from a keyset the server
// knows.
//
// HOLDS.
func TestAttackUnitMismatch(t *testing.T) {
	m := mint(t)
	_, mkey, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	ks, sec, err := coin.GenerateKeyset(rand.Reader, mkey, coin.KeysetParams{
		Unit: "sat", Exponents: []uint8{0, 1, 2, 3}, NotBefore: now.Add(-time.Hour),
		IssueUntil: now.Add(time.Hour), SpendUntil: now.Add(time.Hour), DepositUntil: now.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	sat := &mintKeyset{ks: ks, sec: sec, issueAt: now.Add(-time.Minute)}
	keysets := m.keysets(t)
	if err := keysets.Add(ks); err != nil {
		t.Fatal(err)
	}
	srv := newTestServer(t, serverConfig{addr: atkTCP, keysets: keysets})
	si := srv.share(t, 4096, 'u')
	client := newClientHost(t, srv.host)
	ctx := atkCtx(t)
	coins := sat.withdraw(t, 1, 8, srv.designation())
	req, _ := rawPaid{op: readOp(si, 4096), sched: srv.sched, coins: coins, signFor: srv.host.ID()}.request(t)
	if _, err := Call(ctx, client, srv.host.ID(), StorageID, req); !errors.Is(err, ErrInvalidCoin) {
		t.Fatalf("sat coins for msat prices: %v", err)
	}
	if srv.spent.Coins() != 0 {
		t.Fatal("recorded")
	}
}

// TestAttackRequestIDAbuse: request IDs are chosen by clients. Credit left
// by a failed call serves only that call's body; another body under the
// same ID, from the same peer or another, paid or not, is a bad request
// and records nothing; the victim's retry still works; a peer that
// replays the victim's exact body gets the recorded answer but not the
// allocation (writes are the allocating peer's); a retry after the
// schedule expired is answered without a new charge.
//
// HOLDS.
func TestAttackRequestIDAbuse(t *testing.T) {
	m := mint(t)
	var flaky *flakyBackend
	srv := newTestServer(t, serverConfig{addr: atkTCP, backend: func(b *MemBackend) StorageBackend {
		flaky = &flakyBackend{MemBackend: b}
		return flaky
	}})
	victim := newClientHost(t, srv.host)
	attacker := newClientHost(t, srv.host)
	ctx := atkCtx(t)
	pool := &atkPool{t: t, coins: m.good.purse(t, 12, 2, srv.designation())}
	var si [StorageIndexSize]byte
	rand.Read(si[:])

	// The victim's Allocate fails after payment: its coins are credit.
	cheap := allocOp(si, 100, 60, 0)
	u, _, _ := StorageUsage(cheap, 0)
	id := newRequestID()
	vreq, _ := rawPaid{op: cheap, id: id, sched: srv.sched, coins: pool.take(mustQuote(t, testRates, u)), signFor: srv.host.ID()}.request(t)
	flaky.failAllocate.Store(true)
	if _, err := Call(ctx, victim, srv.host.ID(), StorageID, vreq); !errors.Is(err, ErrInternal) {
		t.Fatalf("got %v", err)
	}
	recorded := srv.spent.Coins()

	// A dearer call under the credited ID: refused, paid or not, from
	// either peer.
	dear := allocOp(si, 1<<20, MaxLeaseSeconds, 0, 1, 2, 3)
	for _, from := range []host.Host{victim, attacker} {
		for _, withCoins := range []bool{false, true} {
			r := rawPaid{op: dear, id: id, sched: srv.sched, signFor: srv.host.ID()}
			if withCoins {
				r.coins = pool.take(8)
			}
			req, _ := r.request(t)
			if _, err := Call(ctx, from, srv.host.ID(), StorageID, req); !errors.Is(err, ErrBadRequest) {
				t.Fatalf("another body under a credited ID: %v", err)
			}
			if withCoins {
				// Refused: the coins go back to the pool (they were not
				// recorded) — but only this server may see them again.
				pool.coins = append(pool.coins, r.coins...)
			}
		}
	}
	if srv.spent.Coins() != recorded {
		t.Fatal("coins recorded for a refused body")
	}
	srv.backend.mu.Lock()
	_, served := srv.backend.shares[memShareKey{si, 1}]
	srv.backend.mu.Unlock()
	if served {
		t.Fatal("the dearer allocation was served")
	}

	// The victim's retry is served on its credit.
	resp, err := Call(ctx, victim, srv.host.ID(), StorageID, &pb.Request{Body: vreq.Body})
	if err != nil {
		t.Fatalf("victim's retry: %v", err)
	}
	// A peer that learnt the victim's body gets the recorded answer, and
	// nothing else: the share is the victim's to write.
	stolen, err := Call(ctx, attacker, srv.host.ID(), StorageID, &pb.Request{Body: vreq.Body})
	if err != nil || !bytes.Equal(stolen.Body, resp.Body) {
		t.Fatalf("replayed body: %v", err)
	}
	if err := atkFree(t, ctx, attacker, srv, writeOp(si, 0, 0, []byte("mine"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the attacker wrote the victim's share: %v", err)
	}
	if err := atkFree(t, ctx, victim, srv, writeOp(si, 0, 0, []byte("ours"))); err != nil {
		t.Fatalf("the victim cannot write: %v", err)
	}

	// The schedule expires and another is current: the retry is still
	// answered from the record, free; a new call under the old schedule
	// is asked to pay again, and nothing is recorded.
	srv.publish(t, testRates, 3*time.Hour)
	srv.clock.advance(2 * time.Hour)
	again, err := Call(ctx, victim, srv.host.ID(), StorageID, &pb.Request{Body: vreq.Body})
	if err != nil || !bytes.Equal(again.Body, resp.Body) || srv.spent.Coins() != recorded {
		t.Fatalf("retry after the schedule changed: %v", err)
	}
	stale, _ := rawPaid{op: cheap, sched: srv.sched, coins: pool.take(8), signFor: srv.host.ID()}.request(t)
	if _, err := Call(ctx, victim, srv.host.ID(), StorageID, stale); !errors.Is(err, ErrPaymentRequired) {
		t.Fatalf("paid under an expired schedule: %v", err)
	}
	if srv.spent.Coins() != recorded {
		t.Fatal("recorded under an expired schedule")
	}
}

// TestAttackEnvelopeShape: spends on a free call, request and schedule IDs
// of the wrong length, too many or misshapen spends, and a body that
// appends a second operation (protobuf keeps the last) under a recorded
// request ID are refused, and record nothing.
//
// HOLDS.
func TestAttackEnvelopeShape(t *testing.T) {
	m := mint(t)
	srv := newTestServer(t, serverConfig{addr: atkTCP})
	si := srv.share(t, 8192, 'e')
	client := newClientHost(t, srv.host)
	ctx := atkCtx(t)
	des := srv.designation()
	coins := m.good.withdraw(t, 8, 8, des)
	read := readOp(si, 4096) // costs 8

	good, _ := rawPaid{op: read, sched: srv.sched, coins: coins[:1], signFor: srv.host.ID()}.request(t)
	if _, err := Call(ctx, client, srv.host.ID(), StorageID, good); err != nil {
		t.Fatal(err)
	}
	base := srv.spent.Coins()

	version := &pb.StorageRequest{Op: &pb.StorageRequest_Version{Version: &pb.Version{}}}
	freeWithSpend, _ := rawPaid{op: version, coins: coins[1:2], signFor: srv.host.ID()}.request(t)
	shortID, _ := rawPaid{op: read, id: make([]byte, 15), sched: srv.sched, coins: coins[2:3], signFor: srv.host.ID()}.request(t)
	badSched := proto.Clone(read).(*pb.StorageRequest)
	badSched.RequestId, badSched.ScheduleId = newRequestID(), make([]byte, 31)
	badSchedReq := &pb.Request{Body: mustMarshal(t, badSched)}
	d := RequestDigest(StorageID, badSchedReq.Body)
	badSchedReq.Spends = [][]byte{coins[3].spend(t, srv.host.ID(), d).Bytes()}
	tooMany, _ := rawPaid{op: read, sched: srv.sched, coins: coins[4:5], signFor: srv.host.ID()}.request(t)
	for len(tooMany.Spends) <= MaxSpends {
		tooMany.Spends = append(tooMany.Spends, tooMany.Spends[0])
	}
	misshapen, _ := rawPaid{op: read, sched: srv.sched, coins: coins[5:6], signFor: srv.host.ID()}.request(t)
	misshapen.Spends[0] = misshapen.Spends[0][:coin.SpendSize-1]
	// Append an Allocate to the good body: same request ID, another op.
	extra := mustMarshal(t, &pb.StorageRequest{Op: &pb.StorageRequest_Allocate{Allocate: &pb.Allocate{
		StorageIndex: si[:], ShareNumbers: []uint32{9}, AllocatedSize: 1 << 20, LeaseSeconds: MaxLeaseSeconds}}})
	spliced := &pb.Request{Body: append(bytes.Clone(good.Body), extra...)}
	spliced.Spends = [][]byte{coins[6].spend(t, srv.host.ID(), RequestDigest(StorageID, spliced.Body)).Bytes()}

	for _, tc := range []struct {
		name string
		req  *pb.Request
	}{
		{"spends on a free call", freeWithSpend},
		{"15-byte request ID", shortID},
		{"31-byte schedule ID", badSchedReq},
		{"65 spends", tooMany},
		{"263-byte spend", misshapen},
		{"a second op appended under a recorded ID", spliced},
	} {
		if _, err := Call(ctx, client, srv.host.ID(), StorageID, tc.req); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v, want BAD_REQUEST", tc.name, err)
		}
	}
	if srv.spent.Coins() != base {
		t.Fatalf("%d coins recorded by refused calls", srv.spent.Coins()-base)
	}
}

// TestAttackSybilForgersDefeatQuarantine: a peer whose spends fail a
// shared batch is quarantined, so that it "cannot push honest callers
// onto single checks". Quarantine is per peer ID, and a libp2p identity
// costs a key generation and a handshake: a forger that uses a fresh one
// per call fails every shared batch it joins, and every honest spend in
// it is verified again alone (two single signature checks each).
//
// Defence claimed: quarantine keeps a forger out of shared batches.
// FAILS: five forgers' calls from five fresh IDs fail five shared batches.
func TestAttackSybilForgersDefeatQuarantine(t *testing.T) {
	f := newBatchFixture(t, 64)
	bv := NewBatchVerifier(f.v, WithVerifySlots(1), WithBatchWindow(20*time.Millisecond, 32))
	ctx := context.Background()
	const rounds = 5
	next := 0
	for r := range rounds {
		block := bv.Announce()
		var wg sync.WaitGroup
		for i := range 5 {
			from, items := peer.ID("honest"), []coin.Item{f.items[next+i]}
			if i == 2 {
				from, items = peer.ID(fmt.Sprintf("sybil-%d", r)), []coin.Item{f.forged(next + i)}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := bv.Verify(ctx, from, items)
				if (err != nil) != (i == 2) {
					t.Errorf("round %d call %d from %s: %v", r, i, from, err)
				}
			}()
		}
		next += 5
		time.Sleep(5 * time.Millisecond)
		block.Cancel()
		wg.Wait()
	}
	st := bv.Stats()
	t.Logf("stats %+v", st)
	if st.Failed > 1 {
		t.Errorf("%d shared batches failed and were re-verified spend by spend, one per fresh forger ID", st.Failed)
	}
}

// TestAttackPendingAnswersAreNotAccounted: the resource manager bounds
// "the memory their frames may hold", but only while a request frame is
// read: the reservation is released as soon as the request is decoded,
// and no answer is ever reserved. A peer that paid once for a 1 MiB Read
// replays it (free, see TestAttackReadReplayServesForFree) on many
// streams and never reads the answers: each handler holds a built 1 MiB
// answer (and its copies) in a blocked write until the 30 s handle
// timeout, none of it counted against the protocol's or the peer's
// memory limit (32 MiB per peer). 128 streams per peer, 1,024 in all.
//
// Defence claimed: per-protocol and per-peer memory limits. FAILED
// before the fix.
//
// Adjusted with the fix: replays of a Read are now capped (one per
// request), so the peer pays for each of its 48 Reads; and the per-peer
// memory limit now holds, so not all 48 answers can be held (the test
// used to demand 48 MiB reserved for one peer whose limit is 32 MiB).
// What must hold: every answer the server keeps in a blocked write is
// reserved, and those answers stay within the peer's memory limit; the
// others are reset.
func TestAttackPendingAnswersAreNotAccounted(t *testing.T) {
	m := mint(t)
	var built atomic.Int64
	srv := newTestServer(t, serverConfig{addr: atkTCP, wrap: func(h Handler) Handler {
		return func(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
			resp, err := h(ctx, remote, req)
			built.Add(1)
			return resp, err
		}
	}})
	si := srv.share(t, MaxReadSize, 'm')
	client := newClientHost(t, srv.host)
	ctx := atkCtx(t)
	const n = 48 // 48 MiB of answers from one peer, over its 32 MiB
	des := srv.designation()
	pool := &atkPool{t: t, coins: append(m.good.withdraw(t, n, 1024, des), m.good.withdraw(t, n, 4, des)...)}
	op := readOp(si, MaxReadSize)
	u, _, _ := StorageUsage(op, 0)
	price := mustQuote(t, testRates, u)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var streams []network.Stream
	defer func() {
		for _, s := range streams {
			s.Reset()
		}
	}()
	for range n {
		req, _ := rawPaid{op: op, sched: srv.sched, coins: pool.take(price), signFor: srv.host.ID()}.request(t)
		s, err := client.NewStream(ctx, srv.host.ID(), StorageID)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
		if err := WriteMsg(s, req, MaxStorageRequestSize); err != nil {
			t.Fatal(err)
		}
		s.CloseWrite()
	}
	// Wait for the answers, or for the server to stop taking requests:
	// once the peer's unread answers fill its memory, its requests are
	// refused (reset).
	for last, since := int64(-1), time.Now(); built.Load() < n && ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
		if b := built.Load(); b != last {
			last, since = b, time.Now()
		} else if time.Since(since) > time.Second {
			break
		}
	}
	time.Sleep(200 * time.Millisecond) // the writes block
	var reserved int64
	srv.host.Network().ResourceManager().ViewProtocol(StorageID, func(s network.ProtocolScope) error {
		reserved = s.Stat().Memory
		return nil
	})
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Now take the answers: those the server held arrive whole.
	held := 0
	for _, s := range streams {
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp := new(pb.Response)
		if ReadMsg(s, resp, MaxStorageResponseSize) != nil || resp.Error != nil {
			continue
		}
		out := new(pb.StorageResponse)
		if proto.Unmarshal(resp.Body, out) == nil && len(out.GetRead().GetData()) == MaxReadSize {
			held++
		}
	}
	t.Logf("%d answers built, %d held in blocked writes; protocol scope reserves %d bytes; heap in use grew by %d MiB",
		built.Load(), held, reserved, (int64(after.HeapInuse)-int64(before.HeapInuse))>>20)
	if held == 0 {
		t.Fatal("no answer was held: the test does not exercise blocked writes")
	}
	if reserved < int64(held)*MaxReadSize {
		t.Errorf("%d answers of %d bytes are held by the server, %d bytes of them are reserved", held, MaxReadSize, reserved)
	}
	if limit := DefaultLimits(StorageID).PeerMemory; int64(held)*MaxReadSize > limit {
		t.Errorf("%d answers of %d bytes held for one peer, over its memory limit of %d", held, MaxReadSize, limit)
	}
}

// TestAttackSybilStreamsStarveHonestCallers: the per-peer stream limit
// (128 by default) stops one peer, but the protocol-wide limit (1,024) is
// shared by all: a few fresh identities holding half-sent requests (each
// kept until the 10 s read timeout, then opened again) take every slot,
// and an honest caller's streams are reset. Here with limits of 32 and 8,
// five identities.
//
// Defence claimed: per-protocol and per-peer stream limits keep hostile
// peers from starving others. FAILS.
func TestAttackSybilStreamsStarveHonestCallers(t *testing.T) {
	m := mint(t)
	limits := DefaultLimits(StorageID)
	limits.Streams, limits.PeerStreams = 32, 8
	srv := newTestServer(t, serverConfig{addr: atkTCP, limits: map[string]ProtocolLimits{StorageID: limits},
		handler: []HandlerOption{WithReadTimeout(3 * time.Second)}})
	si := srv.share(t, 4096, 'f')
	ctx := atkCtx(t)
	var streams []network.Stream
	defer func() {
		for _, s := range streams {
			s.Reset()
		}
	}()
	for range 5 {
		h := newClientHost(t, srv.host)
		for range limits.PeerStreams {
			s, err := h.NewStream(ctx, srv.host.ID(), StorageID)
			if err != nil {
				t.Fatal(err)
			}
			s.Write(append(binaryUvarint(500), "stall"...))
			streams = append(streams, s)
		}
	}
	time.Sleep(200 * time.Millisecond)
	honest := newClientHost(t, srv.host)
	wallet := newTestWallet(m.good.withdraw(t, 2, 8, srv.designation()))
	sc := NewStorageClient(NewPaidClient(honest, wallet, WithRetries(0)))
	sc.Paid().SetSchedule(srv.sched)
	if _, err := sc.Read(ctx, srv.host.ID(), &pb.Read{StorageIndex: si[:], Length: 4096}); err != nil {
		t.Errorf("an honest call while %d streams of 5 fresh peers stall: %v", len(streams), err)
	}
}

func binaryUvarint(x uint64) []byte {
	var b []byte
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}

// TestAttackOversizedListTakesPayment: a List answer is not bounded by the
// server, only checked against the response cap when it is sent, after
// the coins are recorded and the answer stored. Anyone can close tiny
// shares under a storage index (share numbers are uint32; Allocate takes
// 256 at a time, for the per-call price and a few bytes): past about
// 80,000 shares every paid List of that index is answered INTERNAL, its
// coins kept as credit that no retry can use.
//
// Defence claimed: a server never records coins for a call it will not
// serve. FAILS.
func TestAttackOversizedListTakesPayment(t *testing.T) {
	m := mint(t)
	srv := newTestServer(t, serverConfig{addr: atkTCP})
	client := newClientHost(t, srv.host)
	ctx := atkCtx(t)
	var si [StorageIndexSize]byte
	rand.Read(si[:])
	// The attacker's shares, put straight into the backend (as ~400 paid
	// Allocates and free Closes would).
	const n = 100_000
	shares := make([]uint32, n)
	for i := range shares {
		shares[i] = uint32(i)
	}
	if _, err := srv.backend.Allocate(ctx, &Allocation{Writer: "attacker", StorageIndex: si, Shares: shares, Size: 1, Lease: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, n := range shares {
		srv.backend.Close(ctx, "attacker", si, n)
	}
	// A victim pays for a List of the index.
	pool := &atkPool{t: t, coins: m.good.purse(t, 3, 1, srv.designation())}
	list := &pb.StorageRequest{Op: &pb.StorageRequest_List{List: &pb.List{StorageIndex: si[:]}}}
	_, _, err := atkPay(t, ctx, client, srv, list, 0, pool)
	if err != nil {
		t.Errorf("List of an index with %d shares: %v; %d coins recorded (outcome %v)", n, err, srv.spent.Coins(), OutcomeOf(err))
	}
}

// FuzzAttackPaywallServe feeds arbitrary bodies and spends to the paywall
// and the storage decoder: nothing panics, no answer exceeds the response
// cap, and spends that do not verify are never recorded.
func FuzzAttackPaywallServe(f *testing.F) {
	m := mint(f)
	h := newHost(f, "")
	self := h.ID()
	book := NewPriceBook()
	sched, err := SignSchedule(h.Peerstore().PrivKey(self), Schedule{Server: self, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), Unit: "msat", Rates: testRates})
	if err != nil {
		f.Fatal(err)
	}
	book.Publish(sched, "")
	spent := NewMemSpentStore()
	backend := NewMemBackend(1<<30, 1<<30, nil)
	pw := NewPaywall(self, book, m.keysets(f), spent, WithBatchOptions(WithBatchWindow(0, 0),
		WithQuarantine(time.Nanosecond, time.Nanosecond), WithQuarantineRate(0, time.Second)))
	storage := NewStorageServer(backend, pw)
	var si [StorageIndexSize]byte
	si[0] = 1
	ctx := context.Background()
	if _, err := backend.Allocate(ctx, &Allocation{Writer: "w", StorageIndex: si, Shares: []uint32{0}, Size: 100, Lease: time.Hour}); err != nil {
		f.Fatal(err)
	}
	backend.Close(ctx, "w", si, 0)

	sid := sched.ID()
	forged := m.good.withdraw(f, 1, 8, coin.Designation([]byte(self)))[0].spend(f, self, [32]byte{})
	for _, op := range []*pb.StorageRequest{
		readOp(si, 50), allocOp(si, 10, 60, 1, 2),
		{Op: &pb.StorageRequest_List{List: &pb.List{StorageIndex: si[:]}}},
		{Op: &pb.StorageRequest_AddLease{AddLease: &pb.AddLease{StorageIndex: si[:], LeaseSeconds: 60}}},
		{Op: &pb.StorageRequest_CoinStatus{CoinStatus: &pb.CoinStatus{CoinPubs: [][]byte{make([]byte, 32)}}}},
		writeOp(si, 1, 0, []byte("x")), closeOp(si, 1),
		{Op: &pb.StorageRequest_AdviseCorrupt{AdviseCorrupt: &pb.AdviseCorrupt{StorageIndex: si[:], Reason: "r"}}},
	} {
		op.RequestId, op.ScheduleId = make([]byte, RequestIDSize), sid[:]
		b, _ := proto.Marshal(op)
		f.Add(b, uint8(0), forged.Bytes())
		f.Add(b, uint8(1), forged.Bytes())
	}
	f.Fuzz(func(t *testing.T, body []byte, nSpends uint8, spend []byte) {
		req := &pb.Request{Body: body}
		if len(spend) >= coin.SpendSize {
			for range nSpends % 4 {
				req.Spends = append(req.Spends, spend[:coin.SpendSize])
			}
		}
		if checkRequest(req) != nil {
			return
		}
		before := spent.Coins()
		wd := time.AfterFunc(10*time.Second, func() {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			panic("HANG\n" + string(buf[:n]))
		})
		defer wd.Stop()
		out, err := pw.Serve(ctx, "fuzzer", StorageID, req, storage.decode)
		if err != nil {
			EncodeError(err)
		} else if len(out) > MaxStorageResponseSize {
			t.Fatalf("answer of %d bytes", len(out))
		}
		if spent.Coins() != before {
			t.Fatal("a spend that cannot verify was recorded")
		}
	})
}
