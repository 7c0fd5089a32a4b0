package protocol

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/scripnet/scrip/protocol/pb"
)

// TestHostilePeers: a frame over the cap, a lying length prefix, a
// half-sent request that stalls and a flood of streams from one peer are
// each reset or limited within their deadline, while another peer's paid
// calls are served.
func TestHostilePeers(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			testHostilePeers(t, tr.addr)
		})
	}
}

func testHostilePeers(t *testing.T, addr string) {
	const (
		readTimeout = 1500 * time.Millisecond
		peerStreams = 8
		flood       = 100
	)
	m := mint(t)
	limits := DefaultLimits(StorageID)
	limits.PeerStreams = peerStreams
	srv := newTestServer(t, serverConfig{
		addr:    addr,
		limits:  map[string]ProtocolLimits{StorageID: limits},
		handler: []HandlerOption{WithReadTimeout(readTimeout), WithHandleTimeout(5 * time.Second)},
	})
	si := srv.share(t, 8192, 'h')
	hostile := newClientHost(t, srv.host)
	honest := newClientHost(t, srv.host)
	wallet := newTestWallet(m.good.withdraw(t, 400, 8, srv.designation()))
	sc := NewStorageClient(NewPaidClient(honest, wallet))
	sc.Paid().SetSchedule(srv.sched)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// serveHonest makes paid calls from the honest peer until stop closes,
	// and fails the test if one fails or takes more than a second.
	serveHonest := func(stop <-chan struct{}) (wait func() int) {
		var wg sync.WaitGroup
		n := 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				data, err := sc.Read(ctx, srv.host.ID(), &pb.Read{StorageIndex: si[:], Length: 4096})
				if err != nil || len(data) != 4096 {
					t.Errorf("honest call: %v", err)
					return
				}
				if took := time.Since(start); took > time.Second {
					t.Errorf("honest call took %v", took)
				}
				n++
				time.Sleep(20 * time.Millisecond)
			}
		}()
		return func() int { wg.Wait(); return n }
	}
	open := func() network.Stream {
		s, err := hostile.NewStream(ctx, srv.host.ID(), StorageID)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Reset() })
		return s
	}

	t.Run("frame over the cap", func(t *testing.T) {
		stop := make(chan struct{})
		wait := serveHonest(stop)
		s := open()
		go WriteFrame(s, make([]byte, MaxStorageRequestSize+1), MaxStorageRequestSize+1)
		if took := assertReset(t, s, 5*time.Second); took > readTimeout {
			t.Fatalf("reset after %v", took)
		}
		close(stop)
		if wait() == 0 {
			t.Fatal("no honest call served")
		}
	})

	t.Run("lying length prefix", func(t *testing.T) {
		stop := make(chan struct{})
		wait := serveHonest(stop)
		s := open()
		s.Write(append(uvarint(1<<40), "not 2^40 bytes"...))
		if took := assertReset(t, s, 5*time.Second); took > readTimeout {
			t.Fatalf("reset after %v: waited for the body", took)
		}
		close(stop)
		if wait() == 0 {
			t.Fatal("no honest call served")
		}
	})

	t.Run("half-sent request stalls", func(t *testing.T) {
		stop := make(chan struct{})
		wait := serveHonest(stop)
		s := open()
		start := time.Now()
		s.Write(append(uvarint(500), "fifty bytes of a five-hundred-byte request......."...))
		took := assertReset(t, s, 10*time.Second)
		close(stop)
		served := wait()
		if took < readTimeout-100*time.Millisecond || took > readTimeout+2*time.Second {
			t.Fatalf("reset after %v, read timeout %v", time.Since(start), readTimeout)
		}
		if served < 5 {
			t.Fatalf("%d honest calls served while the stalled one waited", served)
		}
	})

	t.Run("flood of streams", func(t *testing.T) {
		stop := make(chan struct{})
		wait := serveHonest(stop)
		start := time.Now()
		var mu sync.Mutex
		var early, late, limited int
		var wg sync.WaitGroup
		for range flood {
			s := open()
			// Half a request, so that an accepted stream stalls.
			if _, err := s.Write(append(uvarint(500), "stall"...)); err != nil && !errors.Is(err, network.ErrReset) {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := io.ReadAll(s)
				took := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				if !errors.Is(err, network.ErrReset) {
					t.Errorf("after %v: %v, want a reset", took, err)
					return
				}
				var se *network.StreamError
				if errors.As(err, &se) && se.ErrorCode == network.StreamResourceLimitExceeded {
					limited++
				}
				if took < readTimeout-100*time.Millisecond {
					early++
				} else {
					late++
				}
			}()
		}
		wg.Wait()
		close(stop)
		served := wait()
		t.Logf("%d streams: %d reset at once (%d with the resource-limit code), %d after the read timeout; %d honest calls served meanwhile",
			flood, early, limited, late, served)
		if late > peerStreams || early < flood-peerStreams {
			t.Fatalf("%d streams were served past the limit of %d", late, peerStreams)
		}
		if took := time.Since(start); took > readTimeout+3*time.Second {
			t.Fatalf("the flood took %v to clear", took)
		}
		if served < 5 {
			t.Fatalf("only %d honest calls served during the flood", served)
		}
	})
}
