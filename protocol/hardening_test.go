package protocol

// Tests of the defences added after the security review of the paid-call
// path (the attack tests are in attack_paid_test.go).

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// TestPaidAnswersFitTheCap: the largest answer of every paid storage
// operation fits the response cap, so a paid call is never refused for
// its size after its coins are recorded.
func TestPaidAnswersFitTheCap(t *testing.T) {
	list := &pb.ListResponse{}
	var alloc pb.AllocateResponse
	for n := range uint32(MaxShareNumbers) {
		list.Shares = append(list.Shares, &pb.Share{ShareNumber: n, Size: math.MaxUint64, LeaseExpires: math.MaxUint64})
		alloc.AlreadyHave = append(alloc.AlreadyHave, n)
		alloc.Allocated = append(alloc.Allocated, n)
	}
	alloc.LeaseExpires = math.MaxUint64
	for name, m := range map[string]*pb.StorageResponse{
		"list":      {Op: &pb.StorageResponse_List{List: list}},
		"allocate":  {Op: &pb.StorageResponse_Allocate{Allocate: &alloc}},
		"read":      {Op: &pb.StorageResponse_Read{Read: &pb.ReadResponse{Data: make([]byte, MaxReadSize)}}},
		"add lease": {Op: &pb.StorageResponse_AddLease{AddLease: &pb.AddLeaseResponse{LeaseExpires: math.MaxUint64}}},
	} {
		if n := proto.Size(&pb.Response{Body: mustMarshal(t, m)}); n > MaxStorageResponseSize {
			t.Errorf("%s: the largest answer is %d bytes, over the cap of %d", name, n, MaxStorageResponseSize)
		}
	}
}

// localStorage is a storage server's paywall and decoder without a host.
type localStorage struct {
	pw      *Paywall
	storage *StorageServer
	backend *MemBackend
	sched   *SignedSchedule
	spent   SpentStore
}

func newLocalStorage(t *testing.T, wrap func(SpentStore) SpentStore) *localStorage {
	t.Helper()
	h := newHost(t, "")
	book := NewPriceBook()
	sched, err := SignSchedule(h.Peerstore().PrivKey(h.ID()), Schedule{Server: h.ID(), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), Unit: "msat", Rates: testRates})
	if err != nil {
		t.Fatal(err)
	}
	book.Publish(sched, "")
	var spent SpentStore = NewMemSpentStore()
	if wrap != nil {
		spent = wrap(spent)
	}
	l := &localStorage{backend: NewMemBackend(1<<30, 1<<30, nil), sched: sched, spent: spent}
	l.pw = NewPaywall(h.ID(), book, mint(t).keysets(t), spent)
	l.storage = NewStorageServer(l.backend, l.pw)
	return l
}

func (l *localStorage) serve(t *testing.T, req *pb.Request) ([]byte, error) {
	t.Helper()
	return l.pw.Serve(context.Background(), "caller", StorageID, req, l.storage.decode)
}

// TestAllocateShareNumbers: share numbers are 0 to 255, and List names
// no other, even if a backend holds them.
func TestAllocateShareNumbers(t *testing.T) {
	l := newLocalStorage(t, nil)
	var si [StorageIndexSize]byte
	rand.Read(si[:])
	for _, n := range []uint32{MaxShareNumbers, math.MaxUint32} {
		req, _ := rawPaid{op: allocOp(si, 10, 60, 0, n), sched: l.sched}.request(t)
		if _, err := l.serve(t, req); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("share number %d: %v, want BAD_REQUEST", n, err)
		}
	}
	ctx := context.Background()
	shares := make([]uint32, 300)
	for i := range shares {
		shares[i] = uint32(i)
	}
	if _, err := l.backend.Allocate(ctx, &Allocation{Writer: "w", StorageIndex: si, Shares: shares, Size: 1, Lease: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, n := range shares {
		l.backend.Close(ctx, "w", si, n)
	}
	coins := mint(t).good.withdraw(t, 1, 4, coin.Designation([]byte(l.pw.Self())))
	req, _ := rawPaid{op: &pb.StorageRequest{Op: &pb.StorageRequest_List{List: &pb.List{StorageIndex: si[:]}}},
		sched: l.sched, coins: coins, signFor: l.pw.Self()}.request(t)
	body, err := l.serve(t, req)
	if err != nil {
		t.Fatal(err)
	}
	out := new(pb.StorageResponse)
	if err := proto.Unmarshal(body, out); err != nil || len(out.GetList().GetShares()) != MaxShareNumbers {
		t.Fatalf("list of 300 shares: %d listed, %v", len(out.GetList().GetShares()), err)
	}
}

// rateLimitedStore refuses every Record as a spent set over its bearer
// cap does.
type rateLimitedStore struct{ SpentStore }

func (rateLimitedStore) Record(context.Context, [RequestIDSize]byte, [DigestSize]byte, []*coin.Spend, uint64) (*SpentRequest, error) {
	return nil, fmt.Errorf("store: bearer cap: %w", ErrRateLimited)
}

// TestRecordRateLimited: a spent set that will not take the coins (its
// bearer cap) makes the call RATE_LIMITED, not INTERNAL: nothing was
// recorded, and the client may pay again with other coins.
func TestRecordRateLimited(t *testing.T) {
	l := newLocalStorage(t, func(s SpentStore) SpentStore { return rateLimitedStore{s} })
	si := [StorageIndexSize]byte{1}
	coins := mint(t).good.withdraw(t, 1, 4, [32]byte{})
	req, _ := rawPaid{op: &pb.StorageRequest{Op: &pb.StorageRequest_List{List: &pb.List{StorageIndex: si[:]}}},
		sched: l.sched, coins: coins, signFor: l.pw.Self()}.request(t)
	_, err := l.serve(t, req)
	if CodeOf(err) != pb.Code_RATE_LIMITED || OutcomeOf(err) != OutcomeRefused {
		t.Fatalf("got %v (outcome %v), want RATE_LIMITED", err, OutcomeOf(err))
	}
}

// leaseFailBackend fails one AddLease when asked.
type leaseFailBackend struct {
	*MemBackend
	fail atomic.Bool
}

func (b *leaseFailBackend) AddLease(ctx context.Context, si [StorageIndexSize]byte, shares []ShareInfo, lease time.Duration) (time.Time, error) {
	if b.fail.CompareAndSwap(true, false) {
		return time.Time{}, errors.New("disk on fire")
	}
	return b.MemBackend.AddLease(ctx, si, shares, lease)
}

// TestAddLeaseRetryRepriced: a retry of an AddLease on the credit of its
// coins is priced again: served if the shares are as they were, refused
// (INTERNAL, the coins still credit) if more are held now than were paid
// for.
func TestAddLeaseRetryRepriced(t *testing.T) {
	m := mint(t)
	var flaky *leaseFailBackend
	srv := newTestServer(t, serverConfig{addr: atkTCP, backend: func(b *MemBackend) StorageBackend {
		flaky = &leaseFailBackend{MemBackend: b}
		return flaky
	}})
	client := newClientHost(t, srv.host)
	ctx := atkCtx(t)
	pool := &atkPool{t: t, coins: m.good.purse(t, 10, 2, srv.designation())}
	si := srv.share(t, 4096, 'l')
	addLease := &pb.StorageRequest{Op: &pb.StorageRequest_AddLease{AddLease: &pb.AddLease{StorageIndex: si[:], LeaseSeconds: 30 * 86400}}}
	u, _, _ := StorageUsage(addLease, 4096)
	price := mustQuote(t, testRates, u)

	// Unchanged shares: the retry is served, free.
	flaky.fail.Store(true)
	req, _ := rawPaid{op: addLease, sched: srv.sched, coins: pool.take(price), signFor: srv.host.ID()}.request(t)
	if _, err := Call(ctx, client, srv.host.ID(), StorageID, req); !errors.Is(err, ErrInternal) {
		t.Fatalf("failed AddLease: %v", err)
	}
	before := leaseEnd(t, srv, si, 0)
	if _, err := Call(ctx, client, srv.host.ID(), StorageID, &pb.Request{Body: req.Body}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !leaseEnd(t, srv, si, 0).After(before) {
		t.Fatal("the retry did not extend the lease")
	}

	// A share closed after the failure: the retry would extend it unpaid.
	flaky.fail.Store(true)
	req, _ = rawPaid{op: addLease, sched: srv.sched, coins: pool.take(price), signFor: srv.host.ID()}.request(t)
	if _, err := Call(ctx, client, srv.host.ID(), StorageID, req); !errors.Is(err, ErrInternal) {
		t.Fatalf("failed AddLease: %v", err)
	}
	if _, err := srv.backend.Allocate(ctx, &Allocation{Writer: "w", StorageIndex: si, Shares: []uint32{1}, Size: 1 << 20, Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := srv.backend.Close(ctx, "w", si, 1); err != nil {
		t.Fatal(err)
	}
	coins := srv.spent.Coins()
	_, err := Call(ctx, client, srv.host.ID(), StorageID, &pb.Request{Body: req.Body})
	if !errors.Is(err, ErrInternal) {
		t.Fatalf("retry after the shares grew: %v, want INTERNAL", err)
	}
	if left := time.Until(leaseEnd(t, srv, si, 1)); left > time.Minute {
		t.Fatalf("the share closed after the call was paid is kept %v", left)
	}
	if srv.spent.Coins() != coins {
		t.Fatal("coins recorded by a retry")
	}
}

// TestReplayTable: the counts of Replay answers expire, and the table
// stays bounded.
func TestReplayTable(t *testing.T) {
	tab := replayTable{n: make(map[[RequestIDSize]byte]replayCount)}
	now := time.Now()
	id := [RequestIDSize]byte{1}
	tab.add(id, now, time.Minute)
	tab.add(id, now, time.Minute)
	if got := tab.get(id, now.Add(30*time.Second)); got != 2 {
		t.Fatalf("count %d, want 2", got)
	}
	if got := tab.get(id, now.Add(time.Minute)); got != 0 {
		t.Fatalf("count %d after expiry", got)
	}
	for i := range maxReplayTracked + 100 {
		var other [RequestIDSize]byte
		other[0], other[1], other[2], other[3] = 2, byte(i), byte(i>>8), byte(i>>16)
		tab.add(other, now.Add(time.Second), time.Hour)
	}
	if len(tab.n) > maxReplayTracked || len(tab.queue)-tab.head > maxReplayTracked+1 {
		t.Fatalf("%d counts and %d queued, bound %d", len(tab.n), len(tab.queue)-tab.head, maxReplayTracked)
	}
}

// TestStreamGuardPerIP: streams are counted per IPv4 address and IPv6
// /56, loopback and non-IP addresses not at all.
func TestStreamGuardPerIP(t *testing.T) {
	g := newStreamGuard(handlerConfig{ipStreams: 2})
	addr := func(s string) ma.Multiaddr {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, tc := range []struct {
		addr string
		key  string
	}{
		{"/ip4/192.0.2.7/tcp/4001", "192.0.2.7/32"},
		{"/ip6/2001:db8:0:12ff::1/udp/4001/quic-v1", "2001:db8:0:1200::/56"},
		{"/ip4/127.0.0.1/tcp/4001", ""},
		{"/ip6/::1/tcp/4001", ""},
		{"/dns4/example.com/tcp/4001", ""},
	} {
		key, ok := ipKey(addr(tc.addr))
		if want, _ := netip.ParsePrefix(tc.key); ok != (tc.key != "") || ok && key != want {
			t.Errorf("%s: key %v %v, want %q", tc.addr, key, ok, tc.key)
		}
	}
	var leaves []func()
	for _, a := range []string{"/ip4/192.0.2.7/tcp/1", "/ip4/192.0.2.7/tcp/2", "/ip6/2001:db8::1/tcp/1", "/ip6/2001:db8:0:ff::2/tcp/1"} {
		leave, ok := g.enter(addr(a))
		if !ok {
			t.Fatalf("%s refused", a)
		}
		leaves = append(leaves, leave)
	}
	for _, a := range []string{"/ip4/192.0.2.7/tcp/3", "/ip6/2001:db8:0:1::9/tcp/1"} {
		if _, ok := g.enter(addr(a)); ok {
			t.Fatalf("%s over the limit admitted", a)
		}
	}
	for range 10 {
		if _, ok := g.enter(addr("/ip4/127.0.0.1/tcp/1")); !ok {
			t.Fatal("loopback limited")
		}
	}
	leaves[0]()
	if _, ok := g.enter(addr("/ip4/192.0.2.7/tcp/3")); !ok {
		t.Fatal("a stream that left still counts")
	}
}
