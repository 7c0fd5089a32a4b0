package node

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/node/shares"
	"github.com/scripnet/scrip/protocol"
)

// Memory of large uploads and downloads. Put and Get must hold O(segment
// × N × calls in flight), whatever the file size: these tests put and get
// files through a real client and servers on 127.0.0.1 whose shares live
// on disk (node/shares stores), so that the process's heap is the
// client's working set plus the servers' buffers, and sample the heap
// while they run.

// newDiskGrid starts a mint and n servers that keep their shares in
// node/shares stores on disk (writes not synced), not in memory, behind
// hooks a test can set.
func newDiskGrid(t *testing.T, n int) (*cgGrid, []*hookBackend) {
	t.Helper()
	g := newCGGrid(t, 0, cgGridOption{})
	keysets, err := protocol.NewKeysetList(g.ks)
	require.NoError(t, err)
	var hooks []*hookBackend
	for range n {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
		require.NoError(t, err)
		st, err := shares.Open(t.TempDir(), 8<<30, shares.WithSyncWrites(false), shares.WithCollectInterval(0))
		require.NoError(t, err)
		s := &cgServer{host: h, spent: protocol.NewMemSpentStore(), prices: protocol.NewPriceBook()}
		t.Cleanup(func() { s.close(); st.Close() })
		now := time.Now()
		sched, err := protocol.SignSchedule(h.Peerstore().PrivKey(h.ID()), protocol.Schedule{
			Server: h.ID(), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), Unit: "msat", Rates: cgRates,
		})
		require.NoError(t, err)
		s.prices.Publish(sched, "")
		hb := &hookBackend{StorageBackend: st.Backend()}
		pw := protocol.NewPaywall(h.ID(), s.prices, keysets, s.spent)
		require.NoError(t, protocol.NewStorageServer(hb, pw).Register(h))
		g.servers = append(g.servers, s)
		hooks = append(hooks, hb)
		require.NoError(t, WriteAnnouncement(g.announce, Announce(RoleServer, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})))
	}
	return g, hooks
}

// hookBackend is a storage backend whose reads and writes a test can
// tamper with, and which records the AdviseCorrupt reports it gets.
type hookBackend struct {
	protocol.StorageBackend
	read  atomic.Pointer[readHook]
	write atomic.Pointer[writeHook]
	list  atomic.Pointer[listHook]
	// alias, if set, serves every share number from another backend's
	// share (a server that passes off one share as any other).
	alias atomic.Pointer[shareAlias]
	// haveAll answers every Allocate that it holds every share asked,
	// closed, and stores nothing.
	haveAll atomic.Bool
	// allocNone answers every Allocate, paid, with no share allocated.
	allocNone atomic.Bool
	// gone makes Stat (and so every Read, before it is paid) answer
	// that share is not found.
	gone atomic.Int64 // share number + 1, 0 for none

	mu     sync.Mutex
	advice []uint32 // share numbers
}

// readHook may change or fail a Read's answer; writeHook may fail a
// Write.
type (
	readHook  func(share uint32, off uint64, data []byte) ([]byte, error)
	writeHook func(share uint32, off uint64, n int) error
	listHook  func(shares []protocol.ShareInfo) []protocol.ShareInfo
)

func (b *hookBackend) List(ctx context.Context, si [protocol.StorageIndexSize]byte) ([]protocol.ShareInfo, error) {
	out, err := b.StorageBackend.List(ctx, si)
	if f := b.list.Load(); f != nil && err == nil {
		return (*f)(out), nil
	}
	return out, err
}

func (b *hookBackend) onList(f listHook) {
	if f == nil {
		b.list.Store(nil)
		return
	}
	b.list.Store(&f)
}

// shareAlias is share number share of backend from.
type shareAlias struct {
	from  protocol.StorageBackend
	share uint32
}

func (b *hookBackend) Read(ctx context.Context, si [protocol.StorageIndexSize]byte, share uint32, off, length uint64) ([]byte, error) {
	var data []byte
	var err error
	if a := b.alias.Load(); a != nil {
		data, err = a.from.Read(ctx, si, a.share, off, length)
	} else {
		data, err = b.StorageBackend.Read(ctx, si, share, off, length)
	}
	if f := b.read.Load(); f != nil && err == nil {
		return (*f)(share, off, data)
	}
	return data, err
}

func (b *hookBackend) Stat(ctx context.Context, si [protocol.StorageIndexSize]byte, share uint32) (protocol.ShareInfo, error) {
	if b.gone.Load() == int64(share)+1 {
		return protocol.ShareInfo{}, fmt.Errorf("%w: share %d is gone", protocol.ErrNotFound, share)
	}
	if a := b.alias.Load(); a != nil {
		info, err := a.from.Stat(ctx, si, a.share)
		info.Number = share
		return info, err
	}
	return b.StorageBackend.Stat(ctx, si, share)
}

func (b *hookBackend) Allocate(ctx context.Context, a *protocol.Allocation) (*protocol.Allocated, error) {
	if b.haveAll.Load() {
		return &protocol.Allocated{AlreadyHave: slices.Clone(a.Shares), LeaseExpires: time.Now().Add(time.Hour)}, nil
	}
	if b.allocNone.Load() {
		return &protocol.Allocated{LeaseExpires: time.Now().Add(time.Hour)}, nil
	}
	return b.StorageBackend.Allocate(ctx, a)
}

func (b *hookBackend) Write(ctx context.Context, writer peer.ID, si [protocol.StorageIndexSize]byte, share uint32, off uint64, data []byte) error {
	if f := b.write.Load(); f != nil {
		if err := (*f)(share, off, len(data)); err != nil {
			return err
		}
	}
	return b.StorageBackend.Write(ctx, writer, si, share, off, data)
}

func (b *hookBackend) AdviseCorrupt(ctx context.Context, si [protocol.StorageIndexSize]byte, share uint32, reason string) error {
	b.mu.Lock()
	b.advice = append(b.advice, share)
	b.mu.Unlock()
	return b.StorageBackend.AdviseCorrupt(ctx, si, share, reason)
}

func (b *hookBackend) advised() []uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.advice)
}

func (b *hookBackend) onRead(f readHook) {
	if f == nil {
		b.read.Store(nil)
		return
	}
	b.read.Store(&f)
}

func (b *hookBackend) onWrite(f writeHook) {
	if f == nil {
		b.write.Store(nil)
		return
	}
	b.write.Store(&f)
}

// heapSampler records the peak of HeapInuse above a baseline taken after
// a collection.
type heapSampler struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done sync.WaitGroup
}

func startHeapSampler() *heapSampler {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := &heapSampler{base: ms.HeapInuse, stop: make(chan struct{})}
	s.peak.Store(ms.HeapInuse)
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > s.peak.Load() {
				s.peak.Store(ms.HeapInuse)
			}
		}
	}()
	return s
}

// end stops sampling and returns the peak above the baseline.
func (s *heapSampler) end() uint64 {
	close(s.stop)
	s.done.Wait()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p := max(s.peak.Load(), ms.HeapInuse)
	if p < s.base {
		return 0
	}
	return p - s.base
}

// prngReader is size deterministic pseudo-random bytes, of a size Put
// cannot see (no Len or Size method).
func prngReader(seed uint64, size int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}), size)
}

// bigRun is one measured put and get.
type bigRun struct {
	size          int64
	putPeak       uint64
	getPeak       uint64
	putDur        time.Duration
	getDur        time.Duration
	putTotalAlloc uint64
	getTotalAlloc uint64
}

func (r bigRun) String() string {
	return fmt.Sprintf("%d MiB: put peak heap +%.1f MiB (%.2f of the file, %v, allocated %.0f MiB), get peak heap +%.1f MiB (%.2f of the file, %v, allocated %.0f MiB)",
		r.size>>20, float64(r.putPeak)/(1<<20), float64(r.putPeak)/float64(r.size), r.putDur.Round(time.Millisecond), float64(r.putTotalAlloc)/(1<<20),
		float64(r.getPeak)/(1<<20), float64(r.getPeak)/float64(r.size), r.getDur.Round(time.Millisecond), float64(r.getTotalAlloc)/(1<<20))
}

func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// putGetMeasured puts size pseudo-random bytes and gets them back, checks
// the digest, and returns the peaks of the heap while each ran.
func putGetMeasured(t *testing.T, ctx context.Context, c *Client, size int64, seed uint64) bigRun {
	t.Helper()
	run := bigRun{size: size}
	in := sha256.New()
	src := io.TeeReader(prngReader(seed, size), in)

	s := startHeapSampler()
	ta := totalAlloc()
	start := time.Now()
	capText, rep, err := c.Put(ctx, src)
	run.putDur = time.Since(start)
	run.putTotalAlloc = totalAlloc() - ta
	run.putPeak = s.end()
	require.NoError(t, err)
	require.EqualValues(t, size, rep.Size)
	require.Len(t, rep.Shares, c.cfg.N)

	out := sha256.New()
	s = startHeapSampler()
	ta = totalAlloc()
	start = time.Now()
	grep, err := c.Get(ctx, capText, out)
	run.getDur = time.Since(start)
	run.getTotalAlloc = totalAlloc() - ta
	run.getPeak = s.end()
	require.NoError(t, err)
	require.Len(t, grep.Shares, c.cfg.K)
	require.Equal(t, in.Sum(nil), out.Sum(nil), "the file came back different")
	return run
}

// bigGrid is a disk-backed grid of ten servers and a funded client.
func bigGrid(t *testing.T) (context.Context, *Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	t.Cleanup(cancel)
	g, _ := newDiskGrid(t, 10)
	c := g.client("", nil)
	_, err := c.Fund(ctx, g.voucher(20_000_000), 0)
	require.NoError(t, err)
	return ctx, c
}

// lowGC makes the collector run often while a test measures the heap, so
// that the peaks show memory held rather than garbage not yet collected.
func lowGC(t *testing.T) {
	old := debug.SetGCPercent(25)
	t.Cleanup(func() { debug.SetGCPercent(old) })
}

// TestClientMemoryIndependentOfSize puts and gets files of 8 and 32 MiB
// and checks that the heap's peak does not grow with the file: the 32 MiB
// file takes no more than the 8 MiB one, give or take 8 MiB, and both
// stay under 24 MiB. (Before Put and Get streamed, the peaks were 42 and
// 135 MiB for the puts, 14 and 50 MiB for the gets.) The heap is the whole
// process's: the ten servers' buffers count too.
func TestClientMemoryIndependentOfSize(t *testing.T) {
	small, large := int64(8<<20), int64(32<<20)
	if raceEnabled {
		// The race detector slows everything tenfold: exercise the code,
		// measure nothing.
		small, large = 2<<20, 4<<20
	}
	lowGC(t)
	ctx, c := bigGrid(t)
	rs := putGetMeasured(t, ctx, c, small, 1)
	rl := putGetMeasured(t, ctx, c, large, 2)
	t.Log(rs)
	t.Log(rl)
	if raceEnabled {
		return
	}
	const bound = 24 << 20
	for _, r := range []bigRun{rs, rl} {
		require.Less(t, r.putPeak, uint64(bound), "put of %d MiB", r.size>>20)
		require.Less(t, r.getPeak, uint64(bound), "get of %d MiB", r.size>>20)
	}
	// Four times the file, not four times the memory.
	require.Less(t, rl.putPeak, rs.putPeak+8<<20, "put memory grows with the file")
	require.Less(t, rl.getPeak, rs.getPeak+8<<20, "get memory grows with the file")
}

// TestClientBigFile puts and gets a file of SCRIP_BIGFILE_MIB MiB (default
// 128) and checks that the heap's peak stays under a quarter of the file.
// It takes about ten seconds on two cores; -short skips it
// (TestClientMemoryIndependentOfSize still runs).
//
//	go test ./node -run 'TestClientBigFile$' -v
//	SCRIP_BIGFILE_MIB=1024 go test ./node -run 'TestClientBigFile$' -v -timeout 30m
func TestClientBigFile(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a large file; TestClientMemoryIndependentOfSize covers the short run")
	}
	mib := int64(128)
	if s := os.Getenv("SCRIP_BIGFILE_MIB"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err)
		mib = v
	}
	lowGC(t)
	ctx, c := bigGrid(t)
	r := putGetMeasured(t, ctx, c, mib<<20, 3)
	t.Log(r)
	require.Less(t, r.putPeak, uint64(mib<<20)/4, "put")
	require.Less(t, r.getPeak, uint64(mib<<20)/4, "get")
	// The spool file is gone.
	left, err := os.ReadDir(filepath.Join(c.cfg.Dir, ClientSpoolDir))
	require.NoError(t, err)
	require.Empty(t, left)
}
