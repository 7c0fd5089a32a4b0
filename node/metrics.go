package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// Helpers shared by the roles' metrics and HTTP endpoints. Each role has
// a Prometheus registry of its own, so that several roles can run in one
// process; metric names start with scrip_mint_ or scrip_server_.

// newRegistry returns a registry with the Go runtime's and the process's
// collectors.
func newRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// opNames maps the field numbers of the oneof "op" of a request message to
// the names of its fields ("withdraw_finish", "allocate", ...).
func opNames(m protoreflect.ProtoMessage) map[protowire.Number]string {
	out := make(map[protowire.Number]string)
	fields := m.ProtoReflect().Descriptor().Oneofs().ByName("op").Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		out[f.Number()] = string(f.Name())
	}
	return out
}

var (
	mintOpNames    = opNames(&pb.MintRequest{})
	storageOpNames = opNames(&pb.StorageRequest{})
)

// opOf returns the name of the operation of a serialized request body
// without decoding its payload: the last field of the op oneof present
// (as protobuf decoding does), or "unknown".
func opOf(body []byte, names map[protowire.Number]string) string {
	op := "unknown"
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return "unknown"
		}
		body = body[n:]
		m := protowire.ConsumeFieldValue(num, typ, body)
		if m < 0 {
			return "unknown"
		}
		body = body[m:]
		if name, ok := names[num]; ok && typ == protowire.BytesType {
			op = name
		}
	}
	return op
}

// outcomeOf names the outcome of a call for metrics: "ok", or the error
// code in lower case ("payment_required", ...).
func outcomeOf(err error) string {
	if err == nil {
		return "ok"
	}
	return strings.ToLower(protocol.CodeOf(err).String())
}

// callMetrics counts the calls of a protocol handler by operation and
// outcome and times them.
type callMetrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newCallMetrics(reg prometheus.Registerer, prefix string) *callMetrics {
	m := &callMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_calls_total",
			Help: "Calls answered, by operation and outcome (ok or the error code).",
		}, []string{"op", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    prefix + "_call_seconds",
			Help:    "Time to handle a call, by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"op"}),
	}
	reg.MustRegister(m.calls, m.duration)
	return m
}

// wrap returns a handler that calls h and counts its calls, with the op
// names of names, and then calls after (if not nil) with the operation,
// the request, the response and the error.
func (m *callMetrics) wrap(h protocol.Handler, names map[protowire.Number]string,
	after func(op string, req *pb.Request, resp *pb.Response, err error)) protocol.Handler {
	return func(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
		start := time.Now()
		resp, err := h(ctx, remote, req)
		op := opOf(req.Body, names)
		m.calls.WithLabelValues(op, outcomeOf(err)).Inc()
		m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
		if after != nil {
			after(op, req, resp, err)
		}
		return resp, err
	}
}

// ErrNotLoopback reports an HTTP endpoint asked to listen beyond the
// loopback interface without leave.
var ErrNotLoopback = errors.New("node: address is not a loopback address")

// checkLoopback reports whether addr (host:port) names a loopback
// address: an IP literal that is loopback, or "localhost". An empty host
// means every interface and is refused.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("node: bad listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %q", ErrNotLoopback, addr)
}

// httpEndpoint is an HTTP server on its own listener.
type httpEndpoint struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// startHTTP listens on addr and serves h until Close, behind the guards
// of guardLocal: requests whose Host header does not name the endpoint,
// and browsers' cross-site requests, are refused.
func startHTTP(addr string, h http.Handler) (*httpEndpoint, error) {
	return listenHTTP(addr, h, nil)
}

// listenHTTP is startHTTP with extra host names the Host header may carry.
func listenHTTP(addr string, h http.Handler, hosts []string) (*httpEndpoint, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("node: listening on %s: %w", addr, err)
	}
	e := &httpEndpoint{
		srv: &http.Server{
			Handler:           guardLocal(newHostPolicy(addr, ln, hosts), h),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
			MaxHeaderBytes:    16 << 10,
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(e.done)
		_ = e.srv.Serve(ln) // ends with ErrServerClosed
	}()
	return e, nil
}

// URL returns http://host:port of the endpoint.
func (e *httpEndpoint) URL() string { return "http://" + e.ln.Addr().String() }

// Close stops the server, letting requests in progress end for up to
// five seconds.
func (e *httpEndpoint) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.srv.Shutdown(ctx)
	if err != nil {
		err = e.srv.Close()
	}
	<-e.done
	return err
}

// metricsHandler serves a registry in the Prometheus text format.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// writeFileAtomic replaces the file at path with data, durably: written to
// a temporary file beside it with mode perm, synced, renamed into place,
// and the directory synced.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return fsyncDir(dir)
}
