package node

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// fakeListener is a listener whose address is fixed, for host policies.
type fakeListener struct {
	net.Listener
	addr net.Addr
}

func (l fakeListener) Addr() net.Addr { return l.addr }

func policyFor(addr, bound string, extra ...string) hostPolicy {
	a, err := net.ResolveTCPAddr("tcp", bound)
	if err != nil {
		panic(err)
	}
	return newHostPolicy(addr, fakeListener{addr: a}, extra)
}

// TestHostPolicy: which Host headers each kind of listener answers.
func TestHostPolicy(t *testing.T) {
	loop := policyFor("127.0.0.1:0", "127.0.0.1:7390")
	named := policyFor("localhost:7390", "127.0.0.1:7390")
	wild := policyFor("0.0.0.0:9464", "0.0.0.0:9464")
	bound := policyFor("192.0.2.7:9464", "192.0.2.7:9464", "Prom.Example")
	byName := policyFor("metrics.internal:9464", "192.0.2.7:9464")
	for _, tc := range []struct {
		p    hostPolicy
		host string
		want bool
	}{
		{loop, "127.0.0.1:7390", true},
		{loop, "localhost:7390", true},
		{loop, "LocalHost:7390", true},
		{loop, "[::1]:7390", true},
		{loop, "127.0.0.2:7390", true},
		{loop, "127.0.0.1:7391", false},
		{loop, "127.0.0.1", false},
		{loop, "localhost", false},
		{loop, "", false},
		{loop, "evil.example:7390", false},
		{loop, "localhost.:7390", false},
		{loop, "localhost.evil.example:7390", false},
		{loop, "127.0.0.1.nip.io:7390", false},
		{loop, "192.0.2.7:7390", false},
		{loop, "[fe80::1%25lo]:7390", false},
		{named, "localhost:7390", true},
		{named, "127.0.0.1:7390", true},
		{named, "evil.example:7390", false},
		{wild, "192.0.2.7:9464", true},
		{wild, "[2001:db8::1]:9464", true},
		{wild, "localhost:9464", true},
		{wild, "prom.example:9464", false},
		{wild, "192.0.2.7:9465", false},
		{bound, "192.0.2.7:9464", true},
		{bound, "192.0.2.8:9464", false},
		{bound, "127.0.0.1:9464", true},
		{bound, "prom.example:9464", true},
		{bound, "PROM.example:9464", true},
		{bound, "evil.example:9464", false},
		{byName, "metrics.internal:9464", true},
		{byName, "192.0.2.7:9464", true},
		{byName, "evil.example:9464", false},
	} {
		require.Equal(t, tc.want, tc.p.allows(tc.host), "%+v %q", tc.p, tc.host)
	}
	port80 := policyFor("127.0.0.1:80", "127.0.0.1:80")
	require.True(t, port80.allows("localhost"))
	require.True(t, port80.allows("[::1]"))
	require.False(t, port80.allows("evil.example"))
}

// TestCrossSite: which browser requests are a page of another site's.
func TestCrossSite(t *testing.T) {
	for _, tc := range []struct {
		origin, site string
		want         bool
	}{
		{"", "", false},
		{"", "none", false},
		{"", "same-origin", false},
		{"http://127.0.0.1:7390", "", false},
		{"http://127.0.0.1:7390", "same-origin", false},
		{"", "cross-site", true},
		{"", "same-site", true},
		{"http://evil.example", "", true},
		{"https://127.0.0.1:7390", "", true},
		{"http://127.0.0.1:7391", "", true},
		{"null", "", true},
		{"http://127.0.0.1:7390", "cross-site", true},
	} {
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:7390/vouchers", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.site != "" {
			r.Header.Set("Sec-Fetch-Site", tc.site)
		}
		require.Equal(t, tc.want, crossSite(r), "%+v", tc)
	}
}

// localCall is one request to a local endpoint, with its token.
type localCall struct {
	method, url, token, body string
}

func (c localCall) do(t *testing.T, host string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(c.method, c.url, strings.NewReader(c.body))
	require.NoError(t, err)
	if host != "" {
		req.Host = host
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := NewLocalHTTPClient(10 * time.Second).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	return resp.StatusCode, string(b)
}

// TestLocalEndpointsRefuseForeignHost: on real listeners on 127.0.0.1,
// every local HTTP endpoint of every role (the mint's admin endpoint, a
// server's metrics, a metrics endpoint, the client API) refuses a request
// whose Host header names another host, as a web page that rebound its
// name to 127.0.0.1 sends, even with the right token; and the same
// request with the endpoint's own Host is answered.
func TestLocalEndpointsRefuseForeignHost(t *testing.T) {
	ctx := cgCtx(t)
	mdir := t.TempDir()
	m := roleMint(t, mdir)
	t.Cleanup(func() { m.Close() })
	s := roleServer(t, t.TempDir(), m.Announcement(), nil)
	t.Cleanup(func() { s.Close() })
	me, err := ServeMetrics(MetricsConfig{Addr: "127.0.0.1:0", Registry: m.Registry(), TokenFile: filepath.Join(mdir, MetricsTokenFile)})
	require.NoError(t, err)
	t.Cleanup(func() { me.Close() })
	open, err := ServeMetrics(MetricsConfig{Addr: "127.0.0.1:0", Registry: s.Registry(), Open: true})
	require.NoError(t, err)
	t.Cleanup(func() { open.Close() })

	g := newCGGrid(t, 3, cgGridOption{})
	cdir := t.TempDir()
	c := g.client(cdir, func(cfg *ClientConfig) { cfg.K, cfg.Happy, cfg.N = 1, 1, 3 })
	_, err = c.Fund(ctx, g.voucher(10_000), 0)
	require.NoError(t, err)
	capText, _, err := c.Put(ctx, strings.NewReader("hello"))
	require.NoError(t, err)
	api := newCGAPI(t, cdir)
	code, err := m.CreateVoucher(ctx, "", 1000)
	require.NoError(t, err)

	admin, tok := m.AdminURL(), m.AdminToken()
	calls := []localCall{
		{"GET", admin + "/metrics", tok, ""},
		{"GET", admin + "/keysets", tok, ""},
		{"GET", admin + "/audit", tok, ""},
		{"POST", admin + "/vouchers/lookup", tok, `{"code":"` + code + `"}`},
		// Calls that change state come last.
		{"POST", admin + "/vouchers", tok, `{"amount":1}`},
		{"POST", admin + "/keysets/rotate", tok, ""},
		{"GET", s.MetricsURL() + "/metrics", "", ""},
		{"GET", me.URL() + "/metrics", me.Token(), ""},
		{"GET", open.URL() + "/metrics", "", ""},
		{"GET", api.url + "/status", api.token, ""},
		{"GET", api.url + "/servers?t=json", api.token, ""},
		{"GET", api.url + "/wallet?t=json", api.token, ""},
		{"GET", api.url + "/wait?min=0", api.token, ""},
		{"GET", api.url + "/metrics", api.token, ""},
		{"POST", api.url + "/get", api.token, `{"capability":"` + capText + `"}`},
		{"POST", api.url + "/wallet/backup", api.token, ""},
		{"POST", api.url + "/fund", api.token, `{"voucher":"abcdefghijklmnopqrstuvwxyz234567"}`},
		{"POST", api.url + "/put", api.token, "a file"},
	}
	for _, call := range calls {
		u, err := url.Parse(call.url)
		require.NoError(t, err)
		port := u.Port()
		for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.1.evil.example:" + port, "localhost:1"} {
			status, body := call.do(t, host)
			require.Equal(t, http.StatusForbidden, status, "%s %s with Host %s: %s", call.method, call.url, host, body)
			require.Contains(t, body, `"kind":"forbidden"`)
		}
		status, body := call.do(t, "", "Origin", "http://evil.example")
		require.Equal(t, http.StatusForbidden, status, "%s %s cross-site: %s", call.method, call.url, body)
		status, body = call.do(t, "", "Sec-Fetch-Site", "cross-site")
		require.Equal(t, http.StatusForbidden, status, "%s %s cross-site: %s", call.method, call.url, body)
		status, body = call.do(t, "localhost:"+port)
		require.NotEqual(t, http.StatusForbidden, status, "%s %s: %s", call.method, call.url, body)
		require.NotEqual(t, http.StatusUnauthorized, status, "%s %s: %s", call.method, call.url, body)
	}
}

// TestServeMetrics: a metrics endpoint wants the token of its file, which
// is made with mode 0600 and kept across restarts; open, it wants none.
func TestServeMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "scrip_test_gauge", Help: "A test gauge."})
	g.Set(42)
	reg.MustRegister(g)
	dir := t.TempDir()
	file := filepath.Join(dir, MetricsTokenFile)

	_, err := ServeMetrics(MetricsConfig{Addr: "127.0.0.1:0", Registry: reg})
	require.Error(t, err, "neither a token file nor open")

	e, err := ServeMetrics(MetricsConfig{Addr: "127.0.0.1:0", Registry: reg, TokenFile: file})
	require.NoError(t, err)
	fi, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	tok := strings.TrimSpace(string(b))
	require.Len(t, tok, 64)
	require.Equal(t, tok, e.Token())

	u := e.URL() + "/metrics"
	status, body := localCall{"GET", u, "", ""}.do(t, "")
	require.Equal(t, http.StatusUnauthorized, status)
	require.NotContains(t, body, "scrip_test_gauge")
	require.Contains(t, body, MetricsTokenFile)
	wrong := []byte(tok)
	wrong[63] ^= 1 // another hex digit
	status, _ = localCall{"GET", u, string(wrong), ""}.do(t, "")
	require.Equal(t, http.StatusUnauthorized, status)
	status, body = localCall{"GET", u, tok, ""}.do(t, "")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "scrip_test_gauge 42")
	status, _ = localCall{"GET", e.URL() + "/", tok, ""}.do(t, "")
	require.Equal(t, http.StatusNotFound, status)
	status, _ = localCall{"POST", u, tok, ""}.do(t, "")
	require.Equal(t, http.StatusMethodNotAllowed, status)
	require.NoError(t, e.Close())

	// A restart keeps the token; a file others may read is narrowed to
	// its owner and group.
	require.NoError(t, os.Chmod(file, 0o644))
	e, err = ServeMetrics(MetricsConfig{Addr: "127.0.0.1:0", Registry: reg, TokenFile: file})
	require.NoError(t, err)
	require.Equal(t, tok, e.Token())
	fi, err = os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	require.NoError(t, e.Close())

	// A file that holds no token is not replaced.
	require.NoError(t, os.WriteFile(file, []byte("secret\n"), 0o600))
	_, err = ServeMetrics(MetricsConfig{Addr: "127.0.0.1:0", Registry: reg, TokenFile: file})
	require.ErrorIs(t, err, errTokenFile)

	// Open: no token, but still no foreign Host.
	e, err = ServeMetrics(MetricsConfig{Addr: "127.0.0.1:0", Registry: reg, Open: true})
	require.NoError(t, err)
	defer e.Close()
	require.Empty(t, e.Token())
	status, body = localCall{"GET", e.URL() + "/metrics", "", ""}.do(t, "")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "scrip_test_gauge 42")
	port := e.URL()[strings.LastIndex(e.URL(), ":")+1:]
	status, _ = localCall{"GET", e.URL() + "/metrics", "", ""}.do(t, "evil.example:"+port)
	require.Equal(t, http.StatusForbidden, status)
}

// TestServeMetricsEveryInterface: an operator may bind metrics to every
// interface on purpose; Prometheus then scrapes by an address of the
// machine, or by a name it is given, and a rebound name is still refused.
func TestServeMetricsEveryInterface(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := ServeMetrics(MetricsConfig{Addr: "0.0.0.0:0", Registry: reg, TokenFile: filepath.Join(t.TempDir(), MetricsTokenFile),
		Hosts: []string{"scrip-server.internal"}})
	if err != nil {
		t.Skipf("cannot listen on every interface here: %v", err)
	}
	defer e.Close()
	port := e.URL()[strings.LastIndex(e.URL(), ":")+1:]
	u := "http://127.0.0.1:" + port + "/metrics"
	for host, want := range map[string]int{
		"127.0.0.1:" + port:             http.StatusOK,
		"192.0.2.7:" + port:             http.StatusOK,
		"[2001:db8::7]:" + port:         http.StatusOK,
		"scrip-server.internal:" + port: http.StatusOK,
		"evil.example:" + port:          http.StatusForbidden,
		"192.0.2.7:1":                   http.StatusForbidden,
	} {
		status, body := localCall{"GET", u, e.Token(), ""}.do(t, host)
		require.Equal(t, want, status, "Host %s: %s", host, body)
	}
	status, _ := localCall{"GET", u, "", ""}.do(t, "192.0.2.7:"+port)
	require.Equal(t, http.StatusUnauthorized, status, "the token is wanted on every interface")
}

// TestLocalRefusalDoesNotWaitForTheBody: a refused request that announces
// a large body and never sends it is answered at once and its connection
// closed: the endpoint does not wait for (or read) the body.
func TestLocalRefusalDoesNotWaitForTheBody(t *testing.T) {
	m := roleMint(t, t.TempDir())
	t.Cleanup(func() { m.Close() })
	addr := strings.TrimPrefix(m.AdminURL(), "http://")
	for _, head := range []string{
		"POST /vouchers HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
		"POST /vouchers HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
	} {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Write([]byte(head + "{"))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		require.Contains(t, []int{http.StatusForbidden, http.StatusUnauthorized}, resp.StatusCode)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// The server closes the connection rather than wait for the body.
		_, err = conn.Read(make([]byte, 1))
		require.ErrorIs(t, err, io.EOF)
		conn.Close()
	}
}

// TestLocalHTTPClient: the client the CLI and AdminClient use follows no
// redirect (the token would go along) and uses no proxy.
func TestLocalHTTPClient(t *testing.T) {
	hits := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		http.Redirect(w, r, "http://192.0.2.1/steal", http.StatusFound)
	}))
	defer ts.Close()
	hc := NewLocalHTTPClient(5 * time.Second)
	require.Nil(t, hc.Transport.(*http.Transport).Proxy)
	resp, err := hc.Get(ts.URL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, 1, hits)
}

// TestAdminVoucherLookup: a voucher is looked up with its code in the
// body; the old form with the code in the URL is gone.
func TestAdminVoucherLookup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	m := roleMint(t, dir)
	t.Cleanup(func() { m.Close() })
	admin := NewAdminClient(m.AdminURL(), m.AdminToken())
	code, err := admin.NewVoucher(ctx, "", 1234)
	require.NoError(t, err)
	a, err := admin.Voucher(ctx, code)
	require.NoError(t, err)
	require.Equal(t, uint64(1234), a.Value)
	require.Equal(t, uint64(1234), a.Remaining)

	status, _ := localCall{"GET", m.AdminURL() + "/vouchers/" + code, m.AdminToken(), ""}.do(t, "")
	require.Contains(t, []int{http.StatusNotFound, http.StatusMethodNotAllowed}, status)
	status, body := localCall{"POST", m.AdminURL() + "/vouchers/lookup", m.AdminToken(), `{"nope":1}`}.do(t, "")
	require.Equal(t, http.StatusBadRequest, status, body)
	status, body = localCall{"POST", m.AdminURL() + "/vouchers/lookup", m.AdminToken(), fmt.Sprintf(`{"code":%q}`, strings.Repeat("a", 8000))}.do(t, "")
	require.Equal(t, http.StatusBadRequest, status, "bodies are bounded: %s", body)
}
