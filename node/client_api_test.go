package node

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// cgAPI calls a client node's HTTP API as the CLI does.
type cgAPI struct {
	t     *testing.T
	url   string
	token string
}

func newCGAPI(t *testing.T, dir string) *cgAPI {
	u, err := os.ReadFile(filepath.Join(dir, ClientAPIFile))
	require.NoError(t, err)
	tok, err := os.ReadFile(filepath.Join(dir, ClientTokenFile))
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(dir, ClientTokenFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	return &cgAPI{t: t, url: strings.TrimSpace(string(u)), token: strings.TrimSpace(string(tok))}
}

func (a *cgAPI) do(method, path string, body io.Reader) *http.Response {
	req, err := http.NewRequest(method, a.url+path, body)
	require.NoError(a.t, err)
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	a.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// json calls and decodes a JSON answer with the given status.
func (a *cgAPI) json(method, path string, body any, status int, out any) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(a.t, err)
		r = bytes.NewReader(b)
	}
	resp := a.do(method, path, r)
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	require.Equal(a.t, status, resp.StatusCode, "%s %s: %s", method, path, b)
	if out != nil {
		require.NoError(a.t, json.Unmarshal(b, out), "%s", b)
	}
}

// TestClientAPI drives a client node through its HTTP API.
func TestClientAPI(t *testing.T) {
	g := newCGGrid(t, 7, cgGridOption{})
	dir := t.TempDir()
	c := g.client(dir, nil)
	a := newCGAPI(t, dir)
	require.Equal(t, c.APIURL(), a.url)

	// The token is required, by every call.
	var resp *http.Response
	for _, path := range []string{"/status", "/metrics"} {
		resp, err := http.Get(a.url + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)
	}

	var st ClientStatus
	a.json("GET", "/status", nil, 200, &st)
	require.Equal(t, 7, st.Servers.Connected)
	require.Equal(t, "msat", st.Unit)
	require.True(t, st.Mint.Connected)
	require.Equal(t, c.host.ID().String(), st.Peer)

	var wait map[string]int
	a.json("GET", "/wait?min=7&timeout=5s", nil, 200, &wait)
	require.Equal(t, 7, wait["connected"])
	var e APIError
	a.json("GET", "/wait?min=8&timeout=100ms", nil, http.StatusGatewayTimeout, &e)
	require.Equal(t, "timeout", e.Kind)
	require.Equal(t, "7 of 8 servers connected after 100ms", e.Error)

	var servers []ServerInfo
	a.json("GET", "/servers?t=json", nil, 200, &servers)
	require.Len(t, servers, 7)
	for _, s := range servers {
		require.True(t, s.Connected)
		require.NotNil(t, s.Schedule)
		require.True(t, s.Schedule.Valid)
		require.Equal(t, cgRates, s.Schedule.Rates)
		require.NotEmpty(t, s.Addresses)
	}

	// Funding: an unknown voucher, then a good one, then spent.
	a.json("POST", "/fund", FundRequest{Voucher: "abcdefghijklmnopqrstuvwxyz234567"}, http.StatusNotFound, &e)
	require.Equal(t, "unknown_voucher", e.Kind)
	v := g.voucher(100_000)
	var fr FundResult
	a.json("POST", "/fund", FundRequest{Voucher: v}, 200, &fr)
	require.Equal(t, uint64(100_000), fr.Withdrawn)
	a.json("POST", "/fund", FundRequest{Voucher: v}, http.StatusConflict, &e)
	require.Equal(t, "voucher_spent", e.Kind)
	require.Contains(t, e.Error, "voucher already spent")

	var wi WalletInfo
	a.json("GET", "/wallet?t=json", nil, 200, &wi)
	require.Equal(t, uint64(100_000), wi.Balance.Unspent)
	require.Equal(t, uint64(100_000), wi.Coins["unspent"].Value)

	// Upload, plain and with progress events.
	data := bytes.Repeat([]byte("scrip "), 20_000)
	var pr PutResult
	resp = a.do("POST", "/put", bytes.NewReader(data))
	require.Equal(t, 200, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&pr))
	require.True(t, strings.HasPrefix(pr.Capability, "scrip:chk:"))
	require.Equal(t, 7, pr.Report.Servers)

	resp = a.do("POST", "/put?progress=1", bytes.NewReader(data[:1000]))
	require.Equal(t, 200, resp.StatusCode)
	sc := bufio.NewScanner(resp.Body)
	progress := 0
	var last PutEvent
	for sc.Scan() {
		require.NoError(t, json.Unmarshal(sc.Bytes(), &last))
		if last.Progress != nil {
			progress++
		}
	}
	require.Positive(t, progress)
	require.NotNil(t, last.Result)

	// Download: the capability goes in the body.
	resp = a.do("POST", "/get", strings.NewReader(`{"capability":"`+pr.Capability+`"}`))
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, int64(len(data)), resp.ContentLength)
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, data, got)
	resp = a.do("POST", "/get", strings.NewReader(`{"capability":"`+last.Result.Capability+`"}`))
	got, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, data[:1000], got)

	a.json("POST", "/get", GetRequest{Capability: "scrip:chk:wrong"}, http.StatusBadRequest, &e)
	require.Equal(t, "bad_capability", e.Kind)
	require.True(t, strings.HasPrefix(e.Error, "not a file capability"))

	var phrase map[string]string
	a.json("POST", "/wallet/backup", nil, 200, &phrase)
	require.Equal(t, c.wallet.Export(), phrase["phrase"])

	// The capability in a URL is not taken.
	resp = a.do("GET", "/get?cap="+url.QueryEscape(pr.Capability), nil)
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	// Metrics, with the token.
	resp = a.do("GET", "/metrics", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	m, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, want := range []string{
		`scrip_client_calls_total{op="allocate",result="ok"} 14`,
		`scrip_client_coins_total{outcome="spent"}`,
		`scrip_client_coins_verified_total`,
		`scrip_client_spent_total`,
		`scrip_client_server_price{rate="per_call"`,
	} {
		require.Contains(t, string(m), want)
	}
	// Nothing secret in the metrics.
	require.NotContains(t, string(m), pr.Capability)
	require.NotContains(t, string(m), v)

	// Closing removes the address file.
	require.NoError(t, c.Close())
	require.NoFileExists(t, filepath.Join(dir, ClientAPIFile))
}
