package protocol

import (
	"bytes"
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/protocol/pb"
)

func TestStorageUsage(t *testing.T) {
	si := make([]byte, 16)
	tests := []struct {
		name string
		op   *pb.StorageRequest
		held uint64
		want Usage
		paid bool
		err  error
	}{
		{"allocate", &pb.StorageRequest{Op: &pb.StorageRequest_Allocate{Allocate: &pb.Allocate{StorageIndex: si, ShareNumbers: []uint32{0, 1, 2}, AllocatedSize: 1000, LeaseSeconds: 60}}},
			0, Usage{StoreBytes: 3000, StoreSeconds: 60, WriteBytes: 3000}, true, nil},
		{"allocate overflows", &pb.StorageRequest{Op: &pb.StorageRequest_Allocate{Allocate: &pb.Allocate{ShareNumbers: []uint32{0, 1}, AllocatedSize: math.MaxUint64}}},
			0, Usage{}, true, ErrBadRequest},
		{"add lease", &pb.StorageRequest{Op: &pb.StorageRequest_AddLease{AddLease: &pb.AddLease{StorageIndex: si, LeaseSeconds: 3600}}},
			5000, Usage{StoreBytes: 5000, StoreSeconds: 3600}, true, nil},
		{"read", &pb.StorageRequest{Op: &pb.StorageRequest_Read{Read: &pb.Read{Length: 4096}}}, 0, Usage{ReadBytes: 4096}, true, nil},
		{"list", &pb.StorageRequest{Op: &pb.StorageRequest_List{List: &pb.List{}}}, 0, Usage{}, true, nil},
		{"write", &pb.StorageRequest{Op: &pb.StorageRequest_Write{Write: &pb.Write{Data: []byte("x")}}}, 0, Usage{}, false, nil},
		{"close", &pb.StorageRequest{Op: &pb.StorageRequest_Close{Close: &pb.Close{}}}, 0, Usage{}, false, nil},
		{"version", &pb.StorageRequest{Op: &pb.StorageRequest_Version{Version: &pb.Version{}}}, 0, Usage{}, false, nil},
		{"prices", &pb.StorageRequest{Op: &pb.StorageRequest_Prices{Prices: &pb.Prices{}}}, 0, Usage{}, false, nil},
		{"advise corrupt", &pb.StorageRequest{Op: &pb.StorageRequest_AdviseCorrupt{AdviseCorrupt: &pb.AdviseCorrupt{}}}, 0, Usage{}, false, nil},
		{"coin status", &pb.StorageRequest{Op: &pb.StorageRequest_CoinStatus{CoinStatus: &pb.CoinStatus{}}}, 0, Usage{}, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, paid, err := StorageUsage(tc.op, tc.held)
			if !errors.Is(err, tc.err) || paid != tc.paid || (err == nil && u != tc.want) {
				t.Fatalf("got %+v %v %v", u, paid, err)
			}
		})
	}
}

func TestMemBackend(t *testing.T) {
	clock := &fixedClock{t: t0}
	m := NewMemBackend(10_000, 4_000, clock.now)
	ctx := context.Background()
	alice, bob := peer.ID("alice"), peer.ID("bob")
	si := [StorageIndexSize]byte{1}
	alloc := &Allocation{Writer: alice, StorageIndex: si, Shares: []uint32{0, 1}, Size: 3_000, Lease: time.Hour}

	if err := m.CheckAllocate(ctx, &Allocation{Writer: alice, StorageIndex: si, Shares: []uint32{0}, Size: 5_000, Lease: time.Hour}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("share too large: %v", err)
	}
	got, err := m.Allocate(ctx, alloc)
	if err != nil || len(got.Allocated) != 2 || len(got.AlreadyHave) != 0 {
		t.Fatalf("allocate: %+v %v", got, err)
	}
	if sp, _ := m.Space(ctx); sp.Available != 4_000 || sp.MaxShareSize != 4_000 {
		t.Fatalf("space %+v", sp)
	}
	// Another two shares of 3,000 do not fit.
	if err := m.CheckAllocate(ctx, &Allocation{Writer: bob, StorageIndex: [16]byte{2}, Shares: []uint32{0, 1}, Size: 3_000, Lease: time.Hour}); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("no space: %v", err)
	}

	// Only the writer writes, inside the share.
	data := bytes.Repeat([]byte("d"), 3_000)
	if err := m.Write(ctx, bob, si, 0, 0, data); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob writes: %v", err)
	}
	if err := m.Write(ctx, alice, si, 0, 1, data); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("write past the end: %v", err)
	}
	if err := m.Write(ctx, alice, si, 0, 0, data); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Read(ctx, si, 0, 0, 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read of an open share: %v", err)
	}
	if err := m.Close(ctx, alice, si, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Write(ctx, alice, si, 0, 0, data); !errors.Is(err, ErrNotFound) {
		t.Fatalf("write after close: %v", err)
	}
	if b, err := m.Read(ctx, si, 0, 2_990, 100); err != nil || len(b) != 10 {
		t.Fatalf("read at the end: %d bytes, %v", len(b), err)
	}

	// Allocating again: share 0 held (lease extended), share 1 still
	// open for alice, nothing for bob.
	clock.advance(30 * time.Minute)
	got, err = m.Allocate(ctx, alloc)
	if err != nil || len(got.AlreadyHave) != 1 || len(got.Allocated) != 1 {
		t.Fatalf("again: %+v %v", got, err)
	}
	if want := clock.now().Add(-30 * time.Minute).Add(2 * time.Hour); !got.LeaseExpires.Equal(want) {
		t.Fatalf("lease ends %v, want %v", got.LeaseExpires, want)
	}
	if got, err := m.Allocate(ctx, &Allocation{Writer: bob, StorageIndex: si, Shares: []uint32{1}, Size: 3_000, Lease: time.Hour}); err != nil || len(got.Allocated)+len(got.AlreadyHave) != 0 {
		t.Fatalf("bob: %+v %v", got, err)
	}

	// AddLease extends closed shares from their current end.
	held, _ := m.List(ctx, si)
	until, err := m.AddLease(ctx, si, held, time.Hour)
	if err != nil || !until.Equal(got.LeaseExpires.Add(time.Hour)) {
		t.Fatalf("add lease: %v %v", until, err)
	}
	if _, err := m.AddLease(ctx, [16]byte{9}, held, time.Hour); !errors.Is(err, ErrNotFound) {
		t.Fatalf("add lease of nothing: %v", err)
	}

	// Leases end: the open share 1 (extended to two hours by the second
	// allocation) goes first, then share 0 (three hours); their space
	// comes back.
	clock.advance(95 * time.Minute)
	if sp, _ := m.Space(ctx); sp.Available != 7_000 {
		t.Fatalf("after share 1 expired: %+v", sp)
	}
	shares, _ := m.List(ctx, si)
	if len(shares) != 1 || shares[0].Number != 0 {
		t.Fatalf("list %+v", shares)
	}
	clock.advance(3 * time.Hour)
	if _, err := m.Stat(ctx, si, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired share: %v", err)
	}
	if sp, _ := m.Space(ctx); sp.Available != 10_000 {
		t.Fatalf("space %+v", sp)
	}

	if err := m.AdviseCorrupt(ctx, si, 0, "bad"); err != nil || len(m.Advice()) != 1 {
		t.Fatal(err)
	}
}

// fixedClock is a clock that moves only when told.
type fixedClock struct{ t time.Time }

func (c *fixedClock) now() time.Time          { return c.t }
func (c *fixedClock) advance(d time.Duration) { c.t = c.t.Add(d) }
