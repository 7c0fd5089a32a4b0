package node

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/protocol"
)

// Attack tests of the node roles: each asserts that a defence holds and
// fails if the attack works.

// TestAttackMintAdminNoToken: a web page (through the user's browser,
// possibly after DNS rebinding) or another local user reaches the mint's
// admin endpoint without the token: it must not create vouchers, read
// them or read the metrics, whatever the Host header or content type; a
// foreign Host header is refused even with the token.
func TestAttackMintAdminNoToken(t *testing.T) {
	m := roleMint(t, t.TempDir())
	u := m.AdminURL()
	require.NotEmpty(t, u)
	port := u[strings.LastIndex(u, ":")+1:]
	cases := []struct {
		name, auth, ctype, host, origin string
		status                          int
	}{
		{"rebinding", "", "text/plain", "evil.example:" + port, "", http.StatusForbidden},
		{"rebinding with token", "Bearer " + m.AdminToken(), "application/json", "evil.example:" + port, "", http.StatusForbidden},
		{"no port", "Bearer " + m.AdminToken(), "application/json", "evil.example", "", http.StatusForbidden},
		{"other port", "Bearer " + m.AdminToken(), "application/json", "127.0.0.1:1", "", http.StatusForbidden},
		{"cross-site form", "Bearer " + m.AdminToken(), "application/x-www-form-urlencoded", "", "http://evil.example", http.StatusForbidden},
		{"form", "", "application/x-www-form-urlencoded", "", "", http.StatusUnauthorized},
		{"empty bearer", "Bearer ", "application/json", "", "", http.StatusUnauthorized},
		{"prefix", "Bearer " + m.AdminToken()[:63], "application/json", "", "", http.StatusUnauthorized},
		{"basic", "Basic " + m.AdminToken(), "application/json", "", "", http.StatusUnauthorized},
		{"lowercase", "bearer x" + m.AdminToken()[1:], "application/json", "", "", http.StatusUnauthorized},
		{"localhost", "", "application/json", "localhost:" + port, "", http.StatusUnauthorized},
	}
	for _, tc := range cases {
		for _, ep := range []struct{ method, path, body string }{
			{http.MethodPost, "/vouchers", `{"amount":1000000}`},
			{http.MethodPost, "/vouchers/lookup", `{"code":"abcdefghijklmnopqrstuvwxyz234567"}`},
			{http.MethodGet, "/metrics", ""},
			{http.MethodGet, "/audit", ""},
		} {
			req, err := http.NewRequest(ep.method, u+ep.path, strings.NewReader(ep.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", tc.ctype)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, tc.status, resp.StatusCode, "%s %s: %s", tc.name, ep.path, b)
			require.NotContains(t, string(b), `"code"`, tc.name)
			require.NotContains(t, string(b), "scrip_mint_", tc.name)
			require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	// The token file is the owner's only.
	info, err := ReadAdminInfo(m.cfg.Dir)
	require.NoError(t, err)
	require.Equal(t, m.AdminToken(), info.Token)
	fi, err := os.Stat(filepath.Join(m.cfg.Dir, MintAdminFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wrong := []byte(m.AdminToken())
	wrong[0] ^= 1 // another hex digit
	_, err = NewAdminClient(u, string(wrong)).NewVoucher(ctx, "", 1)
	require.ErrorIs(t, err, ErrAdminUnauthorized)
}

// TestAttackClientAPINoToken: a local web page (simple CORS requests,
// DNS rebinding with a foreign Host header) or another local user must
// not read the seed phrase, the balances or a file, spend coins or fund
// from the client API, on any of its endpoints; a foreign Host header or a
// cross-site request is refused even with the token; and a non-loopback
// listen address is refused.
func TestAttackClientAPINoToken(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 3, cgGridOption{})
	dir := t.TempDir()
	c := g.client(dir, func(cfg *ClientConfig) { cfg.K, cfg.Happy, cfg.N = 1, 1, 3 })
	_, err := c.Fund(ctx, g.voucher(100_000), 0)
	require.NoError(t, err)
	capText, _, err := c.Put(ctx, strings.NewReader("a secret file"))
	require.NoError(t, err)
	api := newCGAPI(t, dir)
	spent := c.market.Spent()
	port := api.url[strings.LastIndex(api.url, ":")+1:]
	endpoints := []struct{ method, path, ctype, body string }{
		{http.MethodPost, "/wallet/backup", "text/plain", ""},
		{http.MethodPost, "/fund", "text/plain", `{"voucher":"x"}`},
		{http.MethodPost, "/put", "application/x-www-form-urlencoded", "a=b"},
		{http.MethodPost, "/get", "text/plain", `{"capability":"` + capText + `"}`},
		{http.MethodGet, "/wallet?t=json", "", ""},
		{http.MethodGet, "/status", "", ""},
		{http.MethodGet, "/servers?t=json", "", ""},
		{http.MethodGet, "/wait?min=0", "", ""},
		{http.MethodGet, "/metrics", "", ""},
	}
	for _, tc := range []struct {
		name, host, origin, site string
		token                    bool
		status                   int
	}{
		{"rebinding", "attacker.example:80", "http://attacker.example", "", false, http.StatusForbidden},
		{"rebinding with token", "attacker.example:" + port, "", "", true, http.StatusForbidden},
		{"cross-site with token", "", "http://attacker.example", "", true, http.StatusForbidden},
		{"null origin with token", "", "null", "", true, http.StatusForbidden},
		{"fetch metadata with token", "", "", "cross-site", true, http.StatusForbidden},
		{"no token", "", "", "", false, http.StatusUnauthorized},
		{"no token, localhost", "localhost:" + port, "", "", false, http.StatusUnauthorized},
	} {
		for _, ep := range endpoints {
			req, err := http.NewRequest(ep.method, api.url+ep.path, strings.NewReader(ep.body))
			require.NoError(t, err)
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.site != "" {
				req.Header.Set("Sec-Fetch-Site", tc.site)
			}
			if tc.token {
				req.Header.Set("Authorization", "Bearer "+api.token)
			}
			if ep.ctype != "" {
				req.Header.Set("Content-Type", ep.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			require.Equal(t, tc.status, resp.StatusCode, "%s: %s %s: %s", tc.name, ep.method, ep.path, b.String())
			require.NotContains(t, b.String(), "phrase")
			require.NotContains(t, b.String(), "a secret file")
			require.NotContains(t, b.String(), "scrip_client_")
			require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"), ep.path)
		}
	}
	require.Equal(t, spent, c.market.Spent(), "nothing was spent")

	// Only loopback addresses are accepted for the API.
	_, err = startClientAPI(c, "0.0.0.0:0")
	require.Error(t, err)
}

// TestAttackDownloadOvercharge: servers that stored a file cheaply raise
// their per-call price a thousandfold before a fresh client session
// downloads it. The client must not pay many times what the market
// charges: downloads must be bounded by something besides optional
// budgets (default: none).
func TestAttackDownloadOvercharge(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 10, cgGridOption{})
	up := g.client("", nil)
	_, err := up.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	capText, _, err := up.Put(ctx, bytes.NewReader(cgRandom(t, 10<<10)))
	require.NoError(t, err)
	require.NoError(t, up.Close())

	// Every server now publishes a greedy schedule.
	const greedy = 100_000
	for _, s := range g.servers {
		now := time.Now()
		r := cgRates
		r.PerCall = greedy
		sched, err := protocol.SignSchedule(s.host.Peerstore().PrivKey(s.host.ID()), protocol.Schedule{
			Server: s.host.ID(), NotBefore: now.Add(-time.Second), NotAfter: now.Add(time.Hour), Unit: "msat", Rates: r,
		})
		require.NoError(t, err)
		s.prices.Publish(sched, "")
	}

	down := g.client("", nil)
	_, err = down.Fund(ctx, g.voucher(1_000_000), 0)
	require.NoError(t, err)
	var out bytes.Buffer
	rep, _ := down.Get(ctx, capText, &out)
	paid := down.market.Spent()
	t.Logf("download report: %+v; session paid %d msat", rep, paid)
	// At the prices the file was stored at, a download costs a few
	// dozen msat; a thousandfold is not a market price.
	require.Less(t, paid, uint64(greedy),
		"a download paid %d msat to servers quoting %d per call: no ceiling guards downloads", paid, greedy)
}
