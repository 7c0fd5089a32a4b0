package protocol

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

func TestPriceBook(t *testing.T) {
	key, id := testKey(t, 1)
	sign := func(from, to time.Time, perCall uint64) *SignedSchedule {
		s, err := SignSchedule(key, Schedule{Server: id, NotBefore: from, NotAfter: to, Unit: "msat", Rates: Rates{PerCall: perCall}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	b := NewPriceBook()
	if _, _, err := b.Current(t0); !errors.Is(err, ErrNoSchedule) {
		t.Fatalf("empty book: %v", err)
	}
	long := sign(t0, t0.Add(2*time.Hour), 1)
	short := sign(t0, t0.Add(time.Hour), 2)
	b.Publish(long, "first")
	b.Publish(short, "second")
	if cur, msg, err := b.Current(t0.Add(time.Minute)); err != nil || cur != short || msg != "second" {
		t.Fatalf("current %v %q %v", cur, msg, err)
	}
	// When the latest expires, the earlier one still valid is current.
	later := t0.Add(90 * time.Minute)
	if cur, msg, err := b.Current(later); err != nil || cur != long || msg != "" {
		t.Fatalf("current %v %q %v", cur, msg, err)
	}
	// Both are honoured until they expire, then pruned.
	for _, s := range []*SignedSchedule{long, short} {
		if got, ok := b.Lookup(s.ID()); !ok || got != s {
			t.Fatal("lookup")
		}
	}
	if n := b.Prune(later); n != 1 {
		t.Fatalf("pruned %d", n)
	}
	if _, ok := b.Lookup(short.ID()); ok {
		t.Fatal("an expired schedule survived Prune")
	}
	if _, ok := b.Lookup(long.ID()); !ok {
		t.Fatal("a valid schedule was pruned")
	}
}

func TestKeysetList(t *testing.T) {
	m := mint(t)
	l := m.keysets(t)
	if ks, err := l.Lookup(m.good.ks.ID()); err != nil || ks != m.good.ks {
		t.Fatalf("good: %v", err)
	}
	_, err := l.Lookup(m.revoked.ks.ID())
	if !errors.Is(err, ErrRevokedKeyset) || !errors.Is(err, coin.ErrUnknownKeyset) || CodeOf(err) != pb.Code_REVOKED_KEYSET {
		t.Fatalf("revoked: %v", err)
	}
	if _, err := l.Lookup(m.unknown.ks.ID()); !errors.Is(err, coin.ErrUnknownKeyset) || CodeOf(err) != pb.Code_UNKNOWN_KEYSET {
		t.Fatalf("unknown: %v", err)
	}
}

func TestBearerCap(t *testing.T) {
	m := mint(t)
	coins := m.good.withdraw(t, 3, 8, [32]byte{})
	spends := func(cs ...testCoin) []*coin.Spend {
		var out []*coin.Spend
		for _, c := range cs {
			out = append(out, c.spend(t, "server", [32]byte{}))
		}
		return out
	}
	ctx := context.Background()

	b := NewBearerCap(16, nil)
	undo, err := b.AdmitBearer(ctx, [32]byte{}, spends(coins[0], coins[1]))
	if err != nil || b.Held() != 16 {
		t.Fatalf("%v, held %d", err, b.Held())
	}
	if _, err := b.AdmitBearer(ctx, [32]byte{}, spends(coins[2])); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("over the cap: %v", err)
	}
	undo()
	if b.Held() != 0 {
		t.Fatalf("held %d after undo", b.Held())
	}

	// With a depositor, coins beyond the cap are deposited before serving.
	var deposited atomic.Int64
	b = NewBearerCap(8, func(ctx context.Context, digest [DigestSize]byte, s []*coin.Spend) error {
		deposited.Add(int64(len(s)))
		return nil
	})
	if _, err := b.AdmitBearer(ctx, [32]byte{}, spends(coins[0])); err != nil || deposited.Load() != 0 {
		t.Fatal(err)
	}
	if _, err := b.AdmitBearer(ctx, [32]byte{}, spends(coins[1], coins[2])); err != nil || deposited.Load() != 2 || b.Held() != 8 {
		t.Fatalf("%v, deposited %d, held %d", err, deposited.Load(), b.Held())
	}
	b.Deposited(100)
	if b.Held() != 0 {
		t.Fatal("Deposited went below zero")
	}
	// A refused deposit refuses the call.
	b = NewBearerCap(0, func(context.Context, [DigestSize]byte, []*coin.Spend) error {
		return fmt.Errorf("mint says: %w", ErrDoubleSpend)
	})
	if _, err := b.AdmitBearer(ctx, [32]byte{}, spends(coins[0])); CodeOf(err) != pb.Code_DOUBLE_SPEND {
		t.Fatalf("got %v", err)
	}
}

func TestMemSpentStore(t *testing.T) {
	m := mint(t)
	coins := m.good.withdraw(t, 4, 8, [32]byte{})
	sp := func(i int) *coin.Spend { return coins[i].spend(t, "server", [32]byte{}) }
	ctx := context.Background()
	s := NewMemSpentStore()
	id1, id2 := [16]byte{1}, [16]byte{2}
	d1, d2 := [32]byte{1}, [32]byte{2}

	if _, err := s.Lookup(ctx, id1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup: %v", err)
	}
	rec, err := s.Record(ctx, id1, d1, []*coin.Spend{sp(0), sp(1)}, 16)
	if err != nil || rec.Replay || rec.Value != 16 || len(rec.Coins) != 2 {
		t.Fatalf("record: %+v %v", rec, err)
	}
	// The same request again: a replay, nothing new written.
	if rec, err = s.Record(ctx, id1, d1, []*coin.Spend{sp(2)}, 8); err != nil || !rec.Replay || s.Coins() != 2 {
		t.Fatalf("replay: %+v %v", rec, err)
	}
	// The same ID with another digest.
	if _, err := s.Record(ctx, id1, d2, []*coin.Spend{sp(2)}, 8); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("conflict: %v", err)
	}
	// A coin of another request: nothing of this request is recorded.
	_, err = s.Record(ctx, id2, d2, []*coin.Spend{sp(2), sp(1)}, 16)
	var ds *DoubleSpendError
	if !errors.As(err, &ds) || ds.Coin != coins[1].c.Pub || !errors.Is(err, ErrDoubleSpend) {
		t.Fatalf("double spend: %v", err)
	}
	if s.Coins() != 2 || s.Requests() != 1 {
		t.Fatalf("%d coins, %d requests after a refused record", s.Coins(), s.Requests())
	}
	// The same coin twice in one request.
	if _, err := s.Record(ctx, id2, d2, []*coin.Spend{sp(3), sp(3)}, 16); !errors.Is(err, ErrDoubleSpend) || s.Coins() != 2 {
		t.Fatalf("coin twice: %v", err)
	}

	if err := s.Answer(ctx, id1, d1, []byte("answer")); err != nil {
		t.Fatal(err)
	}
	if err := s.Answer(ctx, id1, d1, []byte("another")); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Lookup(ctx, id1); err != nil || !rec.Answered || string(rec.Answer) != "answer" {
		t.Fatalf("lookup: %+v %v", rec, err)
	}
	if err := s.Answer(ctx, id2, d1, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("answer unknown: %v", err)
	}

	s.MarkDeposited(coins[0].c.Pub)
	st, err := s.CoinStatus(ctx, [][32]byte{coins[0].c.Pub, coins[1].c.Pub, coins[3].c.Pub})
	if err != nil {
		t.Fatal(err)
	}
	want := []pb.CoinState{pb.CoinState_COIN_DEPOSITED, pb.CoinState_COIN_RECORDED, pb.CoinState_COIN_UNKNOWN}
	for i, c := range st {
		if c.State != want[i] || (i < 2 && c.RequestID != id1) {
			t.Fatalf("coin %d: %+v", i, c)
		}
	}
	if got := s.Spends(); len(got) != 2 || got[0].Digest != d1 {
		t.Fatalf("spends %v", got)
	}
}

// TestPaywallServe runs the paywall's state machine in process, without a
// network: free operations, malformed paid ones, concurrent retries.
func TestPaywallServe(t *testing.T) {
	m := mint(t)
	key, self := testKey(t, 3)
	book := NewPriceBook()
	now := time.Now()
	sched, err := SignSchedule(key, Schedule{Server: self, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), Unit: "msat", Rates: Rates{PerCall: 8}})
	if err != nil {
		t.Fatal(err)
	}
	book.Publish(sched, "")
	spent := NewMemSpentStore()
	pw := NewPaywall(self, book, m.keysets(t), spent)
	var served atomic.Int64
	release := make(chan struct{})
	decode := func(ctx context.Context, remote peer.ID, body []byte) (*Operation, error) {
		r := new(pb.StorageRequest)
		if err := proto.Unmarshal(body, r); err != nil {
			return nil, badRequest("body")
		}
		op := &Operation{RequestID: r.RequestId, ScheduleID: r.ScheduleId, Paid: r.GetList() != nil}
		op.Serve = func(ctx context.Context) ([]byte, error) {
			if r.GetList() != nil {
				<-release
			}
			return []byte(fmt.Sprint(served.Add(1))), nil
		}
		return op, nil
	}
	ctx := context.Background()
	coins := m.good.withdraw(t, 2, 8, coin.Designation([]byte(self)))
	version := &pb.StorageRequest{Op: &pb.StorageRequest_Version{Version: &pb.Version{}}}
	list := &pb.StorageRequest{Op: &pb.StorageRequest_List{List: &pb.List{}}}

	// A free operation is served, but refuses spends.
	req, _ := rawPaid{op: version, coins: coins[:1], signFor: self}.request(t)
	if _, err := pw.Serve(ctx, "client", StorageID, &pb.Request{Body: req.Body}, decode); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Serve(ctx, "client", StorageID, req, decode); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("free with spends: %v", err)
	}
	// A paid operation needs a 16-byte request ID and a 32-byte schedule ID.
	req, _ = rawPaid{op: list, id: []byte("short"), sched: sched, coins: coins[:1], signFor: self}.request(t)
	if _, err := pw.Serve(ctx, "client", StorageID, req, decode); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("short ID: %v", err)
	}

	// The same request twice at once: served once, charged once, the
	// same answer to both.
	req, _ = rawPaid{op: list, sched: sched, coins: coins[1:2], signFor: self}.request(t)
	answers := make([][]byte, 2)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			answers[i], err = pw.Serve(ctx, "client", StorageID, req, decode)
			if err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if string(answers[0]) != string(answers[1]) || spent.Coins() != 1 || served.Load() != 2 {
		t.Fatalf("answers %q, %d coins, %d served (one free call before)", answers, spent.Coins(), served.Load())
	}
}
