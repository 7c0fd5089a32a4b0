package protocol

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// newHost starts a libp2p host listening on listen, or on nothing if
// listen is empty.
func newHost(t testing.TB, listen string) host.Host {
	t.Helper()
	opt := libp2p.NoListenAddrs
	if listen != "" {
		opt = libp2p.ListenAddrStrings(listen)
	}
	h, err := libp2p.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func connect(t testing.TB, from, to host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// testHandler answers Read with the length asked for (over the cap for
// length 0), List with PAYMENT_REQUIRED, and blocks on AdviseCorrupt until
// its context ends. It reports the number of spends in the version field.
func testHandler(ss *SignedSchedule) Handler {
	return func(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
		sr := new(pb.StorageRequest)
		if err := proto.Unmarshal(req.Body, sr); err != nil {
			return nil, &Error{Code: pb.Code_BAD_REQUEST, Message: "body"}
		}
		var out pb.StorageResponse
		switch op := sr.Op.(type) {
		case *pb.StorageRequest_Version:
			out.Op = &pb.StorageResponse_Version{Version: &pb.VersionResponse{
				Protocols:      []string{StorageID},
				Implementation: strings.Repeat("s", len(req.Spends)),
			}}
		case *pb.StorageRequest_Read:
			n := op.Read.Length
			if n == 0 {
				n = MaxStorageResponseSize
			}
			out.Op = &pb.StorageResponse_Read{Read: &pb.ReadResponse{Data: bytes.Repeat([]byte{'d'}, int(n))}}
		case *pb.StorageRequest_List:
			return nil, &Error{Code: pb.Code_PAYMENT_REQUIRED, Payment: &PaymentRequired{Schedule: ss, Quote: 42}}
		case *pb.StorageRequest_AdviseCorrupt:
			<-ctx.Done()
			return nil, ctx.Err()
		default:
			return nil, ErrNotFound
		}
		body, err := proto.Marshal(&out)
		return &pb.Response{Body: body}, err
	}
}

func storageRequest(t testing.TB, op *pb.StorageRequest, spends int) *pb.Request {
	t.Helper()
	op.RequestId = make([]byte, RequestIDSize)
	req := &pb.Request{Body: mustMarshal(t, op)}
	for range spends {
		req.Spends = append(req.Spends, make([]byte, coin.SpendSize))
	}
	return req
}

// assertReset reads from s and checks that the server reset it within
// limit.
func assertReset(t *testing.T, s network.Stream, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	s.SetReadDeadline(start.Add(limit))
	_, err := io.ReadAll(s)
	took := time.Since(start)
	if !errors.Is(err, network.ErrReset) {
		t.Fatalf("after %v: %v, want a reset", took, err)
	}
	var se *network.StreamError
	if errors.As(err, &se) {
		t.Logf("reset after %v, code %#x", took, se.ErrorCode)
	}
	return took
}

func TestStream(t *testing.T) {
	for _, tr := range []struct{ name, addr string }{
		{"tcp", "/ip4/127.0.0.1/tcp/0"},
		{"quic", "/ip4/127.0.0.1/udp/0/quic-v1"},
	} {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			testStream(t, tr.addr)
		})
	}
}

func testStream(t *testing.T, addr string) {
	const readTimeout = 500 * time.Millisecond
	server := newHost(t, addr)
	key := server.Peerstore().PrivKey(server.ID())
	ss := testScheduleFor(t, key, server.ID())
	server.SetStreamHandler(StorageID, NewStreamHandler(StorageID, testHandler(ss),
		WithReadTimeout(readTimeout), WithHandleTimeout(5*time.Second)))
	client := newHost(t, "")
	connect(t, client, server)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call := func(req *pb.Request) (*pb.StorageResponse, error) {
		resp, err := Call(ctx, client, server.ID(), StorageID, req)
		if err != nil {
			return nil, err
		}
		out := new(pb.StorageResponse)
		if err := proto.Unmarshal(resp.Body, out); err != nil {
			t.Fatal(err)
		}
		return out, nil
	}

	t.Run("call", func(t *testing.T) {
		out, err := call(storageRequest(t, &pb.StorageRequest{Op: &pb.StorageRequest_Version{Version: &pb.Version{}}}, 3))
		if err != nil {
			t.Fatal(err)
		}
		if v := out.GetVersion(); v == nil || v.Protocols[0] != StorageID || v.Implementation != "sss" {
			t.Fatalf("got %v", out)
		}
		conns := client.Network().ConnsToPeer(server.ID())
		if len(conns) == 0 || !strings.Contains(conns[0].RemoteMultiaddr().String(), addr[len("/ip4/127.0.0.1/"):][:3]) {
			t.Fatalf("not over %s: %v", addr, conns)
		}
	})

	t.Run("full-size messages", func(t *testing.T) {
		req := storageRequest(t, &pb.StorageRequest{Op: &pb.StorageRequest_Write{Write: &pb.Write{
			StorageIndex: make([]byte, StorageIndexSize), Data: make([]byte, MaxWriteSize)}}}, MaxSpends)
		if _, err := call(req); !errors.Is(err, ErrNotFound) {
			t.Fatalf("write: %v", err)
		}
		out, err := call(storageRequest(t, &pb.StorageRequest{Op: &pb.StorageRequest_Read{Read: &pb.Read{Length: MaxReadSize}}}, 1))
		if err != nil || len(out.GetRead().Data) != MaxReadSize {
			t.Fatalf("read: %v", err)
		}
	})

	t.Run("payment required", func(t *testing.T) {
		_, err := call(storageRequest(t, &pb.StorageRequest{Op: &pb.StorageRequest_List{List: &pb.List{}}}, 0))
		var e *Error
		if !errors.Is(err, ErrPaymentRequired) || !errors.As(err, &e) || e.Payment.Quote != 42 || e.Payment.Schedule.ID() != ss.ID() {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("bad envelopes", func(t *testing.T) {
		version := &pb.StorageRequest{Op: &pb.StorageRequest_Version{Version: &pb.Version{}}}
		tooMany := storageRequest(t, version, MaxSpends+1)
		short := storageRequest(t, version, 1)
		short.Spends[0] = short.Spends[0][1:]
		for _, req := range []*pb.Request{tooMany, short, {Body: []byte{0xff}}} {
			if _, err := call(req); !errors.Is(err, ErrBadRequest) {
				t.Fatalf("got %v", err)
			}
		}
	})

	t.Run("response over cap", func(t *testing.T) {
		_, err := call(storageRequest(t, &pb.StorageRequest{Op: &pb.StorageRequest_Read{Read: &pb.Read{Length: 0}}}, 0))
		if !errors.Is(err, ErrInternal) {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("request over cap is refused before sending", func(t *testing.T) {
		req := &pb.Request{Body: make([]byte, MaxStorageRequestSize)}
		if _, err := call(req); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("cancel resets", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		req := storageRequest(t, &pb.StorageRequest{Op: &pb.StorageRequest_AdviseCorrupt{AdviseCorrupt: &pb.AdviseCorrupt{}}}, 0)
		_, err := Call(ctx, client, server.ID(), StorageID, req)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
	})

	raw := func(t *testing.T) network.Stream {
		s, err := client.NewStream(ctx, server.ID(), StorageID)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Reset() })
		return s
	}

	t.Run("frame over cap is reset", func(t *testing.T) {
		s := raw(t)
		go WriteFrame(s, make([]byte, MaxStorageRequestSize+1), MaxStorageRequestSize+1)
		assertReset(t, s, 5*time.Second)
	})

	t.Run("lying length prefix is reset", func(t *testing.T) {
		s := raw(t)
		s.Write(append(uvarint(1<<40), "not 2^40 bytes"...))
		if took := assertReset(t, s, 5*time.Second); took > readTimeout {
			t.Fatalf("reset after %v: waited for the body", took)
		}
	})

	t.Run("truncated request is reset", func(t *testing.T) {
		s := raw(t)
		s.Write(append(uvarint(100), "ten bytes."...))
		s.CloseWrite()
		assertReset(t, s, 5*time.Second)
	})

	t.Run("stalled request is reset while another peer is served", func(t *testing.T) {
		s := raw(t)
		start := time.Now()
		s.Write(append(uvarint(100), "ten bytes."...))
		// Another peer is served meanwhile.
		other := newHost(t, "")
		connect(t, other, server)
		req := storageRequest(t, &pb.StorageRequest{Op: &pb.StorageRequest_Version{Version: &pb.Version{}}}, 0)
		if _, err := Call(ctx, other, server.ID(), StorageID, req); err != nil {
			t.Fatal(err)
		}
		served := time.Since(start)
		took := assertReset(t, s, 5*time.Second) + served
		if took < readTimeout-50*time.Millisecond || took > readTimeout+2*time.Second {
			t.Fatalf("reset after %v, read timeout %v", took, readTimeout)
		}
		if served >= took {
			t.Fatalf("other peer served after %v, stalled stream reset after %v", served, took)
		}
	})
}

func TestCallUnknownProtocol(t *testing.T) {
	if _, err := Call(context.Background(), nil, "", "/other/1.0.0", &pb.Request{}); !errors.Is(err, ErrUnknownProtocol) {
		t.Fatalf("got %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("NewStreamHandler accepted another protocol")
		}
	}()
	NewStreamHandler("/other/1.0.0", nil)
}
