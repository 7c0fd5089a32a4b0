package protocol

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/coin"
)

// batchFixture makes spends for one server, each for its own digest.
type batchFixture struct {
	server []byte
	v      *coin.Verifier
	items  []coin.Item
}

func newBatchFixture(t *testing.T, n int) *batchFixture {
	t.Helper()
	m := mint(t)
	f := &batchFixture{server: []byte("batch-server")}
	f.v = &coin.Verifier{Keysets: m.keysets(t), Server: f.server, Window: coin.WindowSpend}
	for i, c := range m.good.withdraw(t, n, 8, [32]byte{}) {
		d := [32]byte{byte(i), byte(i >> 8), 'b'}
		s, err := coin.NewSpend(c.c, c.key, f.server, d)
		if err != nil {
			t.Fatal(err)
		}
		f.items = append(f.items, coin.Item{Spend: s, Digest: d})
	}
	return f
}

// forged returns item i with a broken spend signature.
func (f *batchFixture) forged(i int) coin.Item {
	s := *f.items[i].Spend
	s.SpendSig[3] ^= 1
	return coin.Item{Spend: &s, Digest: f.items[i].Digest}
}

// TestBatchVerifierBatches: calls arriving together are verified in shared
// batches, and all pass; a lone caller is verified at once.
func TestBatchVerifierBatches(t *testing.T) {
	f := newBatchFixture(t, 256)
	bv := NewBatchVerifier(f.v, WithVerifySlots(1))
	ctx := context.Background()

	start := time.Now()
	if err := bv.Verify(ctx, "lone", f.items[:1]); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > DefaultBatchWindow*10 {
		t.Fatalf("a lone call took %v", took)
	}

	var wg sync.WaitGroup
	for i := 1; i < len(f.items); i += 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := bv.Verify(ctx, peer.ID(rune('a'+i%7)), f.items[i:min(i+3, len(f.items))]); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	st := bv.Stats()
	if st.Items != int64(len(f.items)) || st.Shared == 0 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("%d spends in %d batches (%d shared)", st.Items, st.Batches, st.Shared)
}

// TestBatchVerifierForger: a call with a bad spend in a shared batch fails
// alone, the honest calls of the batch pass, and the sender is quarantined:
// verified alone, at most once per interval, and told to wait beyond that.
// The quarantine ends, and doubles for a repeat offender.
func TestBatchVerifierForger(t *testing.T) {
	f := newBatchFixture(t, 40)
	const interval = 50 * time.Millisecond
	bv := NewBatchVerifier(f.v, WithVerifySlots(1), WithQuarantine(300*time.Millisecond, time.Second),
		WithQuarantineRate(interval, 2*interval), WithBatchWindow(20*time.Millisecond, 32))
	ctx := context.Background()

	// Both peers have had a good call, so that they share batches.
	for i, p := range []peer.ID{"honest", "forger"} {
		if err := bv.Verify(ctx, p, f.items[11+i:12+i]); err != nil {
			t.Fatal(err)
		}
	}

	// Hold the only slot so that the next calls queue into one batch.
	block := bv.Announce()
	results := make([]error, 10)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from, items := peer.ID("honest"), []coin.Item{f.items[i]}
			if i == 4 {
				from, items = "forger", []coin.Item{f.items[i], f.forged(10)}
			}
			results[i] = bv.Verify(ctx, from, items)
		}()
	}
	time.Sleep(5 * time.Millisecond)
	block.Cancel()
	wg.Wait()
	for i, err := range results {
		var be *coin.BatchError
		switch {
		case i == 4:
			if !errors.As(err, &be) || len(be.Errs) != 2 || be.Errs[0] != nil || !errors.Is(be.Errs[1], coin.ErrBadSignature) {
				t.Fatalf("forger: %v", err)
			}
		case err != nil:
			t.Fatalf("honest call %d: %v", i, err)
		}
	}
	st := bv.Stats()
	if st.Failed != 1 || st.Offences != 1 || !bv.Quarantined("forger") || bv.Quarantined("honest") {
		t.Fatalf("stats %+v", st)
	}

	// Quarantined: verified alone, one call per interval; a good call
	// from the forger still passes.
	if err := bv.Verify(ctx, "forger", f.items[20:21]); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = bv.Verify(ctx, "forger", f.items[21+i:22+i])
		}()
	}
	wg.Wait()
	limited := 0
	for _, err := range errs {
		switch {
		case errors.Is(err, ErrRateLimited):
			limited++
		case err != nil:
			t.Fatal(err)
		}
	}
	st = bv.Stats()
	if limited == 0 || st.Limited != int64(limited) || st.Alone != int64(1+len(errs)-limited) || st.Shared != 1 {
		t.Fatalf("%d limited; stats %+v", limited, st)
	}

	// A second offence while quarantined doubles the period.
	time.Sleep(interval)
	if err := bv.Verify(ctx, "forger", []coin.Item{f.forged(30)}); !errors.Is(err, coin.ErrBadSignature) {
		t.Fatalf("got %v", err)
	}
	bv.mu.Lock()
	period, until := bv.quar["forger"].period, bv.quar["forger"].until
	bv.mu.Unlock()
	if period != 600*time.Millisecond || !bv.Quarantined("forger") {
		t.Fatalf("the repeat offender's quarantine is %v, want it doubled", period)
	}
	time.Sleep(time.Until(until) + 10*time.Millisecond)
	if bv.Quarantined("forger") {
		t.Fatal("the quarantine did not end")
	}
	if err := bv.Verify(ctx, "forger", f.items[31:32]); err != nil {
		t.Fatal(err)
	}
}

// TestBatchVerifierWaitsForAnnounced: a slot waits, within its window, for
// a call that was announced, and verifies it in the same batch.
func TestBatchVerifierWaitsForAnnounced(t *testing.T) {
	f := newBatchFixture(t, 4)
	bv := NewBatchVerifier(f.v, WithVerifySlots(1), WithBatchWindow(time.Second, 2))
	ctx := context.Background()
	// Both peers have had a good call, so that they share batches.
	for i, p := range []peer.ID{"first", "second"} {
		if err := bv.Verify(ctx, p, f.items[2+i:3+i]); err != nil {
			t.Fatal(err)
		}
	}
	before := bv.Stats()
	a := bv.Announce()
	done := make(chan error)
	go func() { done <- bv.Verify(ctx, "first", f.items[:1]) }()
	time.Sleep(20 * time.Millisecond)
	if err := bv.VerifyAnnounced(ctx, "second", f.items[1:], a); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := bv.Stats(); st.Batches-before.Batches != 1 || st.Shared-before.Shared != 1 {
		t.Fatalf("stats %+v", st)
	}
	// A cancelled announcement does not hold anyone up.
	a = bv.Announce()
	a.Cancel()
	a.Cancel()
	start := time.Now()
	if err := bv.Verify(ctx, "third", f.items[:1]); err != nil || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
}
