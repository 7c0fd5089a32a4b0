package node

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
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
// admin endpoint without the token: it must not create vouchers or read
// them, whatever the Host header or content type.
func TestAttackMintAdminNoToken(t *testing.T) {
	m := roleMint(t, t.TempDir())
	u := m.AdminURL()
	require.NotEmpty(t, u)
	cases := []struct {
		name, auth, ctype, host string
	}{
		{"none", "", "text/plain", "evil.example"},
		{"form", "", "application/x-www-form-urlencoded", ""},
		{"empty bearer", "Bearer ", "application/json", ""},
		{"prefix", "Bearer " + m.AdminToken()[:63], "application/json", ""},
		{"basic", "Basic " + m.AdminToken(), "application/json", ""},
		{"lowercase", "bearer x" + m.AdminToken()[1:], "application/json", ""},
	}
	for _, tc := range cases {
		req, err := http.NewRequest(http.MethodPost, u+"/vouchers", strings.NewReader(`{"amount":1000000}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", tc.ctype)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s: %v", tc.name, body)
		require.NotContains(t, body, "code", tc.name)
	}
	// The token file is the owner's only.
	info, err := ReadAdminInfo(m.cfg.Dir)
	require.NoError(t, err)
	require.Equal(t, m.AdminToken(), info.Token)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wrong := []byte(m.AdminToken())
	wrong[0] ^= 1 // another hex digit
	_, err = NewAdminClient(u, string(wrong)).NewVoucher(ctx, "", 1)
	require.ErrorIs(t, err, ErrAdminUnauthorized)
}

// TestAttackClientAPINoToken: a local web page (simple CORS requests,
// DNS rebinding with a foreign Host header) or another local user must
// not read the seed phrase, spend coins or fund from the client API
// without the token, and a non-loopback listen address is refused.
func TestAttackClientAPINoToken(t *testing.T) {
	ctx := cgCtx(t)
	g := newCGGrid(t, 3, cgGridOption{})
	dir := t.TempDir()
	c := g.client(dir, func(cfg *ClientConfig) { cfg.K, cfg.Happy, cfg.N = 1, 1, 3 })
	_, err := c.Fund(ctx, g.voucher(100_000), 0)
	require.NoError(t, err)
	api := newCGAPI(t, dir)
	for _, tc := range []struct{ method, path, ctype, body string }{
		{http.MethodPost, "/wallet/backup", "text/plain", ""},
		{http.MethodPost, "/fund", "text/plain", `{"voucher":"x"}`},
		{http.MethodPost, "/put", "application/x-www-form-urlencoded", "a=b"},
		{http.MethodGet, "/wallet?t=json", "", ""},
		{http.MethodGet, "/status", "", ""},
	} {
		req, err := http.NewRequest(tc.method, api.url+tc.path, strings.NewReader(tc.body))
		require.NoError(t, err)
		req.Host = "attacker.example:80"
		req.Header.Set("Origin", "http://attacker.example")
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s %s: %s", tc.method, tc.path, b.String())
		require.NotContains(t, b.String(), "phrase")
		require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"), tc.path)
	}
	bal, err := c.wallet.Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(100_000), bal.Unspent, "nothing was spent")

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
