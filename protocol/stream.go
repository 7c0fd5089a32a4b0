package protocol

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// Every scrip stream carries one frame each way: a pb.Request from the
// caller, then a pb.Response from the server. Both sides set deadlines on
// the stream, reserve memory for each frame in the stream's resource scope
// before allocating it (a server holds the reservations of the request
// and of its answer until the answer is written), Reset the stream on
// every error path, and on success CloseWrite once their frame is sent,
// then Close.

// Call sends req to peer p on protocol id (a scrip protocol ID) over a new
// stream of h, and returns the server's response.
//
// The stream's deadline is ctx's deadline, or [DefaultCallTimeout] from now
// if ctx has none; cancelling ctx resets the stream. If the server answers
// with an error, Call returns the *[Error] decoded by [DecodeError] (its
// payment schedule verified as signed by p) and no response. Call checks
// req against the protocol's request cap before opening a stream; an
// error opening it wraps [ErrNotSent].
func Call(ctx context.Context, h host.Host, p peer.ID, id string, req *pb.Request) (*pb.Response, error) {
	caps, ok := CapsFor(id)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProtocol, id)
	}
	if n := proto.Size(req); n > caps.Request {
		return nil, fmt.Errorf("%w: request is %d bytes, cap %d", ErrFrameTooLarge, n, caps.Request)
	}
	s, err := h.NewStream(ctx, p, libp2pprotocol.ID(id))
	if err != nil {
		return nil, fmt.Errorf("protocol: opening %s stream: %w", id, notSent{err})
	}
	resp, err := roundTrip(ctx, s, req, caps)
	if err != nil {
		return nil, err
	}
	if err := DecodeError(resp.Error, p); err != nil {
		return nil, err
	}
	return resp, nil
}

// notSent wraps the failure of a call that sent nothing; it matches
// [ErrNotSent] and its cause under errors.Is, and reads as its cause.
type notSent struct{ err error }

func (e notSent) Error() string   { return e.err.Error() }
func (e notSent) Unwrap() []error { return []error{ErrNotSent, e.err} }

// roundTrip runs one exchange on s and always closes or resets it.
func roundTrip(ctx context.Context, s network.Stream, req *pb.Request, caps Caps) (_ *pb.Response, err error) {
	defer func() {
		if err != nil {
			resetFor(s, err)
		}
	}()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultCallTimeout)
	}
	if err := s.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("protocol: setting deadline: %w", err)
	}
	if err := WriteMsg(s, req, caps.Request); err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("protocol: sending request: %w", err))
	}
	// The request is written whole; the server reads exactly one frame and
	// may answer and close its side (stopping our send direction) before
	// our CloseWrite runs, which QUIC then reports as an error. The
	// response decides the call, so a failed CloseWrite does not.
	_ = s.CloseWrite()
	resp := new(pb.Response)
	if err := readStreamMsg(s, resp, caps.Response); err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("protocol: reading response: %w", err))
	}
	s.Close()
	return resp, nil
}

// ctxErr adds ctx's error to err if ctx is done, since then the failure is
// most likely the reset or the deadline that ctx caused. A stream deadline
// taken from ctx can fire a moment before ctx reports it is done.
func ctxErr(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if d, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(d) {
		cerr = context.DeadlineExceeded
	}
	if cerr != nil {
		return fmt.Errorf("%w (%w)", err, cerr)
	}
	return err
}

// readStreamMsg reads one frame of at most max bytes from s into m,
// holding a memory reservation in s's resource scope while the frame is
// buffered and decoded.
func readStreamMsg(s network.Stream, m proto.Message, max int) error {
	b, release, err := readStreamFrame(s, max, nil)
	if err != nil {
		return err
	}
	defer release()
	return unmarshal(b, m)
}

// readStreamFrame reads one frame of at most max bytes from s, holding a
// memory reservation for it in s's resource scope until release is
// called. sized, if not nil, is told the frame's length once it is known.
func readStreamFrame(s network.Stream, max int, sized func(n int)) (b []byte, release func(), err error) {
	n, err := readFrameLen(s, max)
	if err != nil {
		return nil, nil, err
	}
	if sized != nil {
		sized(n)
	}
	release = func() {}
	if n > 0 {
		if err := s.Scope().ReserveMemory(n, network.ReservationPriorityMedium); err != nil {
			return nil, nil, fmt.Errorf("protocol: reserving %d bytes: %w", n, err)
		}
		release = func() { s.Scope().ReleaseMemory(n) }
	}
	b, err = readFrameBody(s, n)
	if err != nil {
		release()
		return nil, nil, err
	}
	return b, release, nil
}

// resetFor resets s with an error code that says why, where the transport
// can send one.
func resetFor(s network.Stream, err error) {
	switch {
	case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrTruncated), errors.Is(err, ErrMalformed):
		s.ResetWithError(network.StreamProtocolViolation)
	case errors.Is(err, network.ErrResourceLimitExceeded):
		s.ResetWithError(network.StreamResourceLimitExceeded)
	default:
		s.Reset()
	}
}

// Handler answers one request from peer remote. Returning an error answers
// with [EncodeError] of it; returning a nil response and nil error answers
// with an empty success. ctx ends when the exchange's time is up or the
// base context ends; the stream is reset then.
type Handler func(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error)

// HandlerOption configures [NewStreamHandler].
type HandlerOption func(*handlerConfig)

type handlerConfig struct {
	base          context.Context
	readTimeout   time.Duration
	handleTimeout time.Duration
	ipStreams     int
	stallGrace    time.Duration
	stallRate     int
}

// Defaults of [NewStreamHandler]'s defences against peers that hold
// streams without using them.
const (
	// DefaultIPStreams bounds the streams of one protocol that peers at
	// one IP address (an IPv4 address, an IPv6 /56) may have in a
	// handler at once: a quarter of the protocol's default stream limit,
	// so that identities made up at one address cannot take all of it.
	DefaultIPStreams = 256
	// DefaultStallGrace and DefaultStallRate set when a stream whose
	// request has not arrived is stalled: after DefaultStallGrace, plus
	// the time the request's length takes at DefaultStallRate bytes per
	// second.
	DefaultStallGrace = 100 * time.Millisecond
	DefaultStallRate  = 64 << 10
)

// WithReadTimeout sets how long a server waits for the whole request.
func WithReadTimeout(d time.Duration) HandlerOption {
	return func(c *handlerConfig) { c.readTimeout = d }
}

// WithHandleTimeout sets how long one exchange may take in all: reading
// the request, handling it and writing the response.
func WithHandleTimeout(d time.Duration) HandlerOption {
	return func(c *handlerConfig) { c.handleTimeout = d }
}

// WithBaseContext sets the context every handler's context derives from;
// when it ends, all exchanges in progress are reset.
func WithBaseContext(ctx context.Context) HandlerOption {
	return func(c *handlerConfig) { c.base = ctx }
}

// WithIPStreamLimit bounds the streams that peers at one IP address (an
// IPv4 address, an IPv6 /56) may have in the handler at once; a stream
// over it is reset at once, with the resource-limit code. Loopback
// addresses are not limited. 0 turns the limit off.
func WithIPStreamLimit(n int) HandlerOption {
	return func(c *handlerConfig) { c.ipStreams = max(n, 0) }
}

// WithStallEviction sets when a stream whose request is still arriving
// is stalled: grace after it was opened plus the time its request's
// length takes at rate bytes per second. While the protocol's inbound
// streams are at three quarters or more of the resource manager's limit,
// stalled streams are reset (with the resource-limit code) so that
// others can be opened. A zero grace turns this off.
func WithStallEviction(grace time.Duration, rate int) HandlerOption {
	return func(c *handlerConfig) { c.stallGrace, c.stallRate = grace, max(rate, 1) }
}

// NewStreamHandler returns a libp2p stream handler that serves handler on
// protocol id, a scrip protocol ID; it panics for any other ID. Register it
// with h.SetStreamHandler(id, ...).
//
// For each stream it reads one pb.Request of at most the protocol's request
// cap, resetting the stream if the frame is over the cap, truncated or not
// whole within the read timeout. A request that does not decode, has more
// than [MaxSpends] spends or a spend that is not coin.SpendSize bytes is
// answered BAD_REQUEST without calling handler. Otherwise it calls handler
// and writes its response, or INTERNAL if the response is over the cap.
//
// The memory reserved for the request stays reserved until the response
// is written, and the size of a response over 64 KiB is reserved before
// it is written (at a higher priority than requests); if that is
// refused, the stream is reset with the resource-limit code. So the
// resource manager's memory limits cover the answers that peers leave
// unread.
//
// Against peers that hold streams without using them, which the
// resource manager's per-protocol stream limit does not tell apart from
// honest ones, the handler bounds the streams per IP address
// ([WithIPStreamLimit]) and, while the protocol is crowded, resets
// streams whose requests stall ([WithStallEviction]).
//
// Defaults: read timeout [DefaultReadTimeout], handle timeout
// [DefaultHandleTimeout], base context context.Background(),
// [DefaultIPStreams] per IP address, stalls after [DefaultStallGrace]
// plus the request at [DefaultStallRate].
func NewStreamHandler(id string, handler Handler, opts ...HandlerOption) network.StreamHandler {
	caps, ok := CapsFor(id)
	if !ok {
		panic(fmt.Sprintf("protocol: NewStreamHandler: %q is not a scrip protocol ID", id))
	}
	c := handlerConfig{
		base:          context.Background(),
		readTimeout:   DefaultReadTimeout,
		handleTimeout: DefaultHandleTimeout,
		ipStreams:     DefaultIPStreams,
		stallGrace:    DefaultStallGrace,
		stallRate:     DefaultStallRate,
	}
	for _, o := range opts {
		o(&c)
	}
	g := newStreamGuard(c)
	return func(s network.Stream) { serve(s, handler, caps, c, g) }
}

// answerReserveMin is the size above which a server reserves an answer's
// memory before writing it: a quarter of yamux's initial stream window
// (256 KiB; QUIC's is larger), so that smaller answers never wait for
// the peer to read.
const answerReserveMin = 64 << 10

func serve(s network.Stream, handler Handler, caps Caps, c handlerConfig, g *streamGuard) {
	start := time.Now()
	leave, ok := g.enter(s.Conn().RemoteMultiaddr())
	if !ok {
		s.ResetWithError(network.StreamResourceLimitExceeded)
		return
	}
	defer leave()
	ctx, cancel := context.WithDeadline(c.base, start.Add(c.handleTimeout))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	if s.SetReadDeadline(start.Add(min(c.readTimeout, c.handleTimeout))) != nil ||
		s.SetWriteDeadline(start.Add(c.handleTimeout)) != nil {
		s.Reset()
		return
	}
	w := g.watch(s, start)
	defer w.exit()
	b, release, err := readStreamFrame(s, caps.Request, w.sized)
	w.stop()
	if err != nil {
		resetFor(s, err)
		return
	}
	// The request's memory stays reserved until its answer is written:
	// the decoded request is about as large as its frame.
	defer release()
	req := new(pb.Request)
	if proto.Unmarshal(b, req) != nil {
		err = &Error{Code: pb.Code_BAD_REQUEST, Message: "request does not decode"}
	}
	var resp *pb.Response
	if err == nil {
		err = checkRequest(req)
	}
	if err == nil {
		resp, err = handler(ctx, s.Conn().RemotePeer(), req)
	}
	if err != nil {
		resp = &pb.Response{Error: EncodeError(err)}
	} else if resp == nil {
		resp = &pb.Response{}
	}
	frame, err := encodeMsg(resp, caps.Response)
	if err != nil {
		frame, err = encodeMsg(&pb.Response{Error: &pb.Error{Code: pb.Code_INTERNAL}}, caps.Response)
		if err != nil {
			s.Reset()
			return
		}
	}
	// The answer is held until the peer has taken it: reserve it, ahead
	// of new requests (which reserve at a lower priority). An answer
	// that fits a stream's initial flow-control window is sent at once,
	// so only larger ones are reserved (a reservation costs several
	// locked updates, and go-libp2p's metrics, a formatted timestamp).
	if n := len(frame); n > answerReserveMin {
		if err := s.Scope().ReserveMemory(n, network.ReservationPriorityHigh); err != nil {
			s.ResetWithError(network.StreamResourceLimitExceeded)
			return
		}
		defer s.Scope().ReleaseMemory(n)
	}
	if _, err := s.Write(frame); err != nil {
		s.Reset()
		return
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return
	}
	s.Close()
}

// checkRequest applies the envelope's shape rules.
func checkRequest(req *pb.Request) error {
	if len(req.Spends) > MaxSpends {
		return &Error{Code: pb.Code_BAD_REQUEST, Message: fmt.Sprintf("%d spends, at most %d", len(req.Spends), MaxSpends)}
	}
	for i, sp := range req.Spends {
		if len(sp) != coin.SpendSize {
			return &Error{Code: pb.Code_BAD_REQUEST, Message: fmt.Sprintf("spend %d is %d bytes, want %d", i, len(sp), coin.SpendSize)}
		}
	}
	return nil
}
