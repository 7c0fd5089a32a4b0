package node

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The guards every local HTTP endpoint of the roles shares: the mint's
// admin endpoint, a metrics endpoint and the client node's API.
//
//   - The Host header must name the endpoint: "localhost" or a loopback IP
//     literal with the listener's port, or the address the listener is
//     bound to (any IP literal if it is bound to every interface), or a
//     name configured for it. A web page that rebinds its own domain
//     name to 127.0.0.1 sends that name and is refused (403).
//   - Browser requests from another site are refused (403): an Origin
//     header other than the endpoint's own, or a Sec-Fetch-Site header
//     other than "same-origin" or "none". No answer carries CORS headers.
//   - Tokens are bearer tokens, compared in constant time; an empty token
//     matches nothing.
//   - Every answer is marked Cache-Control: no-store and nosniff.

// MetricsTokenFile is the file, in a role's directory, holding the bearer
// token of the role's metrics endpoint ([ServeMetrics]): 64 hex digits,
// made with mode 0600 at the first start and kept across restarts, so that
// a Prometheus scrape configuration can name it (credentials_file).
const MetricsTokenFile = "metrics.token"

// hostPolicy says which Host headers an endpoint answers.
type hostPolicy struct {
	port  string          // the listener's port
	ip    net.IP          // the listener's address
	names map[string]bool // lower-case host names accepted besides localhost
}

// newHostPolicy returns the policy of a listener made for addr: its port,
// its address, the host of addr if it is a name, and the extra names.
func newHostPolicy(addr string, ln net.Listener, extra []string) hostPolicy {
	p := hostPolicy{names: make(map[string]bool)}
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		p.ip, p.port = a.IP, fmt.Sprint(a.Port)
	} else if _, port, err := net.SplitHostPort(ln.Addr().String()); err == nil {
		p.port = port
	}
	if host, _, err := net.SplitHostPort(addr); err == nil && host != "" && net.ParseIP(host) == nil {
		p.names[strings.ToLower(host)] = true
	}
	for _, n := range extra {
		if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
			p.names[n] = true
		}
	}
	return p
}

// allows reports whether an endpoint with policy p answers a request
// whose Host header is hostport.
func (p hostPolicy) allows(hostport string) bool {
	if hostport == "" || p.port == "" {
		return false
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		// No port: the default port of http.
		host, port = hostport, "80"
		if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
		}
	}
	if port != p.port {
		return false
	}
	host = strings.ToLower(host)
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		switch {
		case ip.IsLoopback():
			return true
		case p.ip == nil:
			return false
		case p.ip.IsUnspecified():
			// Bound to every interface: any address of the machine. An
			// IP literal cannot be rebound by a web page.
			return true
		}
		return ip.Equal(p.ip)
	}
	return p.names[host]
}

// crossSite reports whether r is a browser's request from a page of
// another origin: the endpoints serve no pages, so every such request is
// an attempt to use the user's browser against them.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "none", "same-origin":
	default:
		return true
	}
	origins := r.Header.Values("Origin")
	switch len(origins) {
	case 0:
		return false
	case 1:
		return origins[0] != "http://"+r.Host
	}
	return true
}

// localError is the body of a refusal by a guard: the shape of [APIError],
// which the admin endpoint's client reads too.
type localError struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

// refuse answers a refused request and drops the connection without
// reading the rest of its body.
func refuse(w http.ResponseWriter, status int, kind, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="scrip"`)
	}
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	b, _ := json.Marshal(localError{Error: msg, Kind: kind})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// guardLocal wraps h with the Host and cross-site checks of p.
func guardLocal(p hostPolicy, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("Cache-Control", "no-store")
		hdr.Set("X-Content-Type-Options", "nosniff")
		if !p.allows(r.Host) {
			refuse(w, http.StatusForbidden, "forbidden", "refused: the Host header does not name this endpoint (use 127.0.0.1 or localhost with its port)")
			return
		}
		if crossSite(r) {
			refuse(w, http.StatusForbidden, "forbidden", "refused: a browser request from another site")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bearerOK reports whether r carries "Authorization: Bearer T" for one of
// tokens, comparing in constant time. Empty tokens match nothing.
func bearerOK(r *http.Request, tokens ...string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || got == "" {
		return false
	}
	match := 0
	for _, t := range tokens {
		if t != "" {
			match |= subtle.ConstantTimeCompare([]byte(got), []byte(t))
		}
	}
	return match == 1
}

// requireBearer wraps h with a check of the bearer token: one of those
// tokens returns.
func requireBearer(h http.Handler, hint string, tokens func() []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !bearerOK(r, tokens()...) {
			refuse(w, http.StatusUnauthorized, "unauthorized", hint)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// newToken returns 32 random bytes in hex.
func newToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// errTokenFile reports a token file that holds no token.
var errTokenFile = errors.New("node: not a token file")

// loadOrMakeToken returns the token in the file at path, made (mode 0600)
// if there is none. A file that other users may read or write is narrowed
// to its owner and group (an operator may give its group, Prometheus's,
// the right to read it).
func loadOrMakeToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		tok := newToken()
		if err := writeFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("node: writing the token file: %w", err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("node: reading the token file: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o007 != 0 {
		if err := os.Chmod(path, fi.Mode().Perm()&^0o007); err != nil {
			return "", fmt.Errorf("node: narrowing the token file %s: %w", path, err)
		}
	}
	tok := strings.TrimSpace(string(b))
	if raw, err := hex.DecodeString(tok); err != nil || len(raw) < 16 {
		return "", fmt.Errorf("%w: %s should hold at least 32 hex digits (delete it to make a new one)", errTokenFile, path)
	}
	return tok, nil
}

// NewLocalHTTPClient returns an HTTP client for the roles' local
// endpoints, which carries their tokens: it never goes through a proxy
// (whatever HTTP_PROXY says) and never follows a redirect. A timeout of 0
// means none.
func NewLocalHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	return &http.Client{
		Transport: t,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// MetricsConfig configures [ServeMetrics].
type MetricsConfig struct {
	// Addr is the host:port to listen on. It may be any address: an
	// operator may expose metrics to a remote Prometheus on purpose.
	Addr string
	// Registry holds the metrics ([Mint.Registry], [Server.Registry],
	// [Client.Registry]).
	Registry *prometheus.Registry
	// TokenFile is the file of the bearer token that GET /metrics wants
	// (normally [MetricsTokenFile] in the role's directory): read if it
	// exists, else made with a new token, mode 0600. Required unless Open.
	TokenFile string
	// Open serves the metrics without a token to whoever reaches Addr.
	Open bool
	// Hosts are host names, besides localhost and the IP literals of
	// Addr, that the Host header may carry: the names Prometheus uses to
	// reach a non-loopback Addr.
	Hosts []string
}

// MetricsEndpoint is a running metrics endpoint: GET /metrics only.
type MetricsEndpoint struct {
	e     *httpEndpoint
	token string
}

// ServeMetrics serves c.Registry at /metrics on c.Addr until Close: to
// requests with "Authorization: Bearer TOKEN", the token of c.TokenFile,
// unless c.Open; in either case only to requests whose Host header names
// the endpoint and that are not a browser's cross-site requests.
func ServeMetrics(c MetricsConfig) (*MetricsEndpoint, error) {
	if c.Registry == nil {
		return nil, errors.New("node: metrics: no registry")
	}
	m := &MetricsEndpoint{}
	if !c.Open {
		if c.TokenFile == "" {
			return nil, errors.New("node: metrics: no token file (or set Open)")
		}
		tok, err := loadOrMakeToken(c.TokenFile)
		if err != nil {
			return nil, err
		}
		m.token = tok
	}
	var h http.Handler = metricsHandler(c.Registry)
	if !c.Open {
		h = requireBearer(h, "unauthorized: send the token of the role's "+MetricsTokenFile+" file",
			func() []string { return []string{m.token} })
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	e, err := listenHTTP(c.Addr, mux, c.Hosts)
	if err != nil {
		return nil, fmt.Errorf("node: metrics: %w", err)
	}
	m.e = e
	return m, nil
}

// URL returns http://host:port of the endpoint; metrics are at URL()+"/metrics".
func (m *MetricsEndpoint) URL() string { return m.e.URL() }

// Token returns the token the endpoint wants, or "" if it is open.
func (m *MetricsEndpoint) Token() string { return m.token }

// Close stops the endpoint.
func (m *MetricsEndpoint) Close() error { return m.e.Close() }
