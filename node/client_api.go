package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/files"
	"github.com/scripnet/scrip/node/pricing"
	"github.com/scripnet/scrip/node/wallet"
	"github.com/scripnet/scrip/protocol"
)

// The client node's local HTTP API. It listens on a loopback address only
// and writes its URL into the client directory (file "api") and a random
// bearer token beside it (file "api.token", mode 0600, new at each start);
// every call, GET /metrics included, must carry "Authorization: Bearer
// TOKEN", so that only the user who runs the node can spend its coins or
// read its balances.
//
//	GET  /status                       the node, the mint, servers, wallet, ceiling (JSON)
//	GET  /servers?t=json               servers: peer, addresses, connected, schedule, score
//	GET  /wallet?t=json                balances and coins by state
//	POST /wallet/backup                the wallet's seed phrase (JSON {"phrase": ...})
//	POST /fund                         {"voucher": CODE, "amount": N (optional)} → FundResult
//	POST /wallet/recoup                recoups coins of revoked keysets → RecoupResult
//	POST /put[?progress=1][&size=N]    the file as the body → {"capability", "report"};
//	                                   with progress, newline-delimited JSON events first;
//	                                   size (or Content-Length) lets the upload place
//	                                   shares while it reads the body
//	POST /get                          {"capability": CAP} → the file (Content-Length is its size)
//	GET  /wait?min=N&timeout=30s       waits for N servers with valid schedules
//	GET  /metrics                      Prometheus metrics
//
// Secrets (voucher codes, capabilities) travel in request bodies, never in
// URLs, which end up in logs. Requests whose Host header does not name the
// API (DNS rebinding) and browsers' cross-site requests are refused with
// 403 "forbidden" before the token is looked at (see guardLocal).
//
// Errors are JSON {"error": "one line for a person", "kind": "no_funds"}
// with a matching status code; see [APIErrorKind].

// APIError is the body of an error answer of the client's HTTP API.
type APIError struct {
	// Error is one line for a person.
	Error string `json:"error"`
	// Kind classifies it: see [APIErrorKind].
	Kind string `json:"kind"`
}

// APIErrorKind returns the HTTP status and kind the client's API answers
// err with: no_funds (402), over_budget (402), mint_unreachable (502),
// unknown_voucher (404), voucher_spent (409), bad_capability (400),
// file_not_found (404), too_few_servers (503), no_servers (503),
// upload_failed (503), too_large (413), timeout (504), bad_request (400)
// and internal (500). The guards answer unauthorized (401) and forbidden
// (403) themselves.
func APIErrorKind(err error) (status int, kind string) {
	switch {
	case errors.Is(err, ErrNoFunds):
		return http.StatusPaymentRequired, "no_funds"
	case errors.Is(err, pricing.ErrOverBudget):
		return http.StatusPaymentRequired, "over_budget"
	case errors.Is(err, ErrMintUnreachable):
		return http.StatusBadGateway, "mint_unreachable"
	case errors.Is(err, ErrVoucherUnknown):
		return http.StatusNotFound, "unknown_voucher"
	case errors.Is(err, ErrVoucherSpent):
		return http.StatusConflict, "voucher_spent"
	case errors.Is(err, ErrBadCapability):
		return http.StatusBadRequest, "bad_capability"
	case errors.Is(err, ErrFileNotFound):
		return http.StatusNotFound, "file_not_found"
	case errors.Is(err, pricing.ErrTooFewServers):
		return http.StatusServiceUnavailable, "too_few_servers"
	case errors.Is(err, ErrNoServers):
		return http.StatusServiceUnavailable, "no_servers"
	case errors.Is(err, ErrUploadFailed):
		return http.StatusServiceUnavailable, "upload_failed"
	case errors.Is(err, files.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "timeout"
	case errors.Is(err, errAPIBadRequest):
		return http.StatusBadRequest, "bad_request"
	}
	return http.StatusInternalServerError, "internal"
}

var errAPIBadRequest = errors.New("bad request")

// kindError is a message of its own that matches a sentinel.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// clientAPI is the running HTTP server.
type clientAPI struct {
	c     *Client
	srv   *http.Server
	url   string
	token string
	wg    sync.WaitGroup
}

func startClientAPI(c *Client, addr string) (*clientAPI, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("client: API address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("client: the API listens on a loopback address only, not %q", host)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("client: API: %w", err)
	}
	a := &clientAPI{c: c, url: "http://" + ln.Addr().String(), token: newToken()}
	// No ReadTimeout or WriteTimeout: uploads and downloads stream for as
	// long as they take. Only callers with the token get that far.
	a.srv = &http.Server{
		Handler:           guardLocal(newHostPolicy(addr, ln, nil), a.handler()),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	if err := writeFileAtomic(filepath.Join(c.cfg.Dir, ClientTokenFile), []byte(a.token+"\n"), 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(c.cfg.Dir, ClientAPIFile), []byte(a.url+"\n"), 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("API server", "err", err)
		}
	}()
	return a, nil
}

func (a *clientAPI) close() error {
	// Remove the address file first, if it is still ours, so that no CLI
	// finds a node that is going away.
	p := filepath.Join(a.c.cfg.Dir, ClientAPIFile)
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == a.url {
		os.Remove(p)
		os.Remove(filepath.Join(a.c.cfg.Dir, ClientTokenFile))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := a.srv.Shutdown(ctx)
	if err != nil {
		err = a.srv.Close()
	}
	a.wg.Wait()
	return err
}

func (a *clientAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", a.auth(promhttp.HandlerFor(a.c.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP))
	mux.HandleFunc("GET /status", a.auth(a.status))
	mux.HandleFunc("GET /servers", a.auth(a.servers))
	mux.HandleFunc("GET /wallet", a.auth(a.walletInfo))
	mux.HandleFunc("POST /wallet/backup", a.auth(a.backup))
	mux.HandleFunc("POST /fund", a.auth(a.fund))
	mux.HandleFunc("POST /wallet/recoup", a.auth(a.recoup))
	mux.HandleFunc("POST /put", a.auth(a.put))
	mux.HandleFunc("POST /get", a.auth(a.get))
	mux.HandleFunc("GET /wait", a.auth(a.wait))
	return mux
}

func (a *clientAPI) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !bearerOK(r, a.token) {
			refuse(w, http.StatusUnauthorized, "unauthorized", "unauthorized: send the token of the client directory's "+ClientTokenFile+" file")
			return
		}
		h(w, r)
	}
}

// Registry returns the Prometheus registry of the client node's metrics,
// which the API serves at /metrics (see also [ServeMetrics]).
func (c *Client) Registry() *prometheus.Registry { return c.metrics.reg }

func writeAPIJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeAPIError(w http.ResponseWriter, err error) {
	status, kind := APIErrorKind(err)
	writeAPIJSON(w, status, APIError{Error: oneLine(err.Error()), Kind: kind})
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// ---- status ----

// ClientStatus is the answer of GET /status.
type ClientStatus struct {
	Peer    string         `json:"peer"` // this session's peer ID
	Mint    MintStatus     `json:"mint"`
	Unit    string         `json:"unit"`
	Servers ServersSummary `json:"servers"`
	Wallet  wallet.Balance `json:"wallet"`
	// Ceiling is the market's ceiling now, if any price is known.
	Ceiling *protocol.Rates `json:"ceiling,omitempty"`
	// Spent is what this session paid.
	Spent uint64 `json:"spent"`
	K     int    `json:"k"`
	Happy int    `json:"happy"`
	N     int    `json:"n"`
}

// MintStatus is the mint as the client sees it.
type MintStatus struct {
	Peer      string `json:"peer"`
	Connected bool   `json:"connected"`
	Keysets   int    `json:"keysets"`
}

// ServersSummary counts servers.
type ServersSummary struct {
	Known     int `json:"known"`
	Connected int `json:"connected"`
	Penalised int `json:"penalised"`
}

// Status returns the node's status.
func (c *Client) Status(ctx context.Context) (*ClientStatus, error) {
	st := &ClientStatus{
		Peer: c.host.ID().String(),
		Mint: MintStatus{Peer: c.mintAI.ID.String(), Connected: c.host.Network().Connectedness(c.mintAI.ID) == network.Connected,
			Keysets: len(c.wallet.Keysets())},
		Unit:  c.unit,
		Spent: c.market.Spent(),
		K:     c.cfg.K, Happy: c.cfg.Happy, N: c.cfg.N,
	}
	for _, s := range c.Servers() {
		st.Servers.Known++
		if s.Connected && s.Schedule != nil && s.Schedule.Valid {
			st.Servers.Connected++
		}
		if s.Penalised {
			st.Servers.Penalised++
		}
	}
	if r, err := c.market.Ceiling(); err == nil {
		st.Ceiling = &r
	}
	b, err := c.wallet.Balance(ctx)
	if err != nil {
		return nil, err
	}
	st.Wallet = b
	return st, nil
}

func (a *clientAPI) status(w http.ResponseWriter, r *http.Request) {
	st, err := a.c.Status(r.Context())
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeAPIJSON(w, http.StatusOK, st)
}

// ServerInfo is one server as GET /servers describes it.
type ServerInfo struct {
	Peer      string        `json:"peer"`
	Addresses []string      `json:"addresses"`
	Connected bool          `json:"connected"`
	Schedule  *ScheduleInfo `json:"schedule,omitempty"`
	Score     float64       `json:"score"`
	Penalised bool          `json:"penalised"`
	Calls     uint64        `json:"calls"`
	LastError string        `json:"last_error,omitempty"`
}

// ScheduleInfo is a server's price schedule.
type ScheduleInfo struct {
	NotBefore time.Time      `json:"not_before"`
	NotAfter  time.Time      `json:"not_after"`
	Valid     bool           `json:"valid"`
	Unit      string         `json:"unit"`
	Rates     protocol.Rates `json:"rates"`
}

// Servers describes the known servers, in the order announced.
func (c *Client) Servers() []ServerInfo {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ServerInfo, 0, len(c.order))
	for _, id := range c.order {
		s := c.servers[id]
		si := ServerInfo{
			Peer:      id.String(),
			Connected: c.host.Network().Connectedness(id) == network.Connected,
			Score:     c.scores.Score(id),
			Penalised: c.scores.Penalised(id),
			Calls:     s.calls,
			LastError: s.lastErr,
		}
		for _, m := range s.info.Addrs {
			si.Addresses = append(si.Addresses, m.String())
		}
		if sc := s.sched; sc != nil {
			si.Schedule = &ScheduleInfo{NotBefore: sc.NotBefore, NotAfter: sc.NotAfter, Valid: sc.Check(now) == nil,
				Unit: sc.Unit, Rates: sc.Rates}
		}
		out = append(out, si)
	}
	return out
}

func (a *clientAPI) servers(w http.ResponseWriter, r *http.Request) {
	list := a.c.Servers()
	if r.URL.Query().Get("t") == "json" {
		writeAPIJSON(w, http.StatusOK, list)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, s := range list {
		state := "disconnected"
		if s.Connected {
			state = "connected"
		}
		price := "no prices"
		if s.Schedule != nil {
			price = fmt.Sprintf("per call %d, store %d/GiB-month, read %d/GiB, write %d/GiB %s",
				s.Schedule.Rates.PerCall, s.Schedule.Rates.StorePerGiBMonth, s.Schedule.Rates.ReadPerGiB, s.Schedule.Rates.WritePerGiB, s.Schedule.Unit)
		}
		fmt.Fprintf(w, "%s  %-12s  score %.2f  %s\n", s.Peer, state, s.Score, price)
	}
}

// WalletInfo is the answer of GET /wallet.
type WalletInfo struct {
	Unit    string         `json:"unit"`
	Balance wallet.Balance `json:"balance"`
	// Coins counts the coins in each state, with their value.
	Coins map[string]CoinCount `json:"coins"`
	// Designated is the unspent value designated to each server.
	Designated map[string]uint64 `json:"designated,omitempty"`
}

// CoinCount is a number of coins and their value.
type CoinCount struct {
	Count int    `json:"count"`
	Value uint64 `json:"value"`
}

// WalletInfo describes the wallet.
func (c *Client) WalletInfo(ctx context.Context) (*WalletInfo, error) {
	b, err := c.wallet.Balance(ctx)
	if err != nil {
		return nil, err
	}
	coins, err := c.wallet.Coins(ctx)
	if err != nil {
		return nil, err
	}
	wi := &WalletInfo{Unit: c.unit, Balance: b, Coins: make(map[string]CoinCount)}
	byDesignation := make(map[[32]byte]string)
	for _, id := range c.serverIDs() {
		byDesignation[coin.Designation([]byte(id))] = id.String()
	}
	for _, ci := range coins {
		cc := wi.Coins[ci.State.String()]
		cc.Count++
		cc.Value += ci.Coin.Amount
		wi.Coins[ci.State.String()] = cc
		if ci.State == wallet.Unspent && ci.Coin.Designated != ([32]byte{}) {
			name := byDesignation[ci.Coin.Designated]
			if name == "" {
				name = "unknown server"
			}
			if wi.Designated == nil {
				wi.Designated = make(map[string]uint64)
			}
			wi.Designated[name] += ci.Coin.Amount
		}
	}
	return wi, nil
}

func (a *clientAPI) walletInfo(w http.ResponseWriter, r *http.Request) {
	wi, err := a.c.WalletInfo(r.Context())
	if err != nil {
		writeAPIError(w, err)
		return
	}
	if r.URL.Query().Get("t") == "json" {
		writeAPIJSON(w, http.StatusOK, wi)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "unspent %d %s, reserved %d, bound %d, pending %d\n", wi.Balance.Unspent, wi.Unit, wi.Balance.Reserved, wi.Balance.Bound, wi.Balance.Pending)
	for state, cc := range wi.Coins {
		fmt.Fprintf(w, "%-9s %d coins, %d %s\n", state, cc.Count, cc.Value, wi.Unit)
	}
}

func (a *clientAPI) backup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeAPIJSON(w, http.StatusOK, map[string]string{"phrase": a.c.wallet.Export()})
}

// FundRequest is the body of POST /fund.
type FundRequest struct {
	Voucher string `json:"voucher"`
	// Amount to withdraw; 0 withdraws everything the voucher holds.
	Amount uint64 `json:"amount,omitempty"`
}

func (a *clientAPI) fund(w http.ResponseWriter, r *http.Request) {
	var req FundRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeAPIError(w, fmt.Errorf("%w: the body is not a fund request", errAPIBadRequest))
		return
	}
	res, err := a.c.Fund(r.Context(), req.Voucher, req.Amount)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeAPIJSON(w, http.StatusOK, res)
}

func (a *clientAPI) recoup(w http.ResponseWriter, r *http.Request) {
	res, err := a.c.Recoup(r.Context())
	if err != nil && res == nil {
		writeAPIError(w, err)
		return
	}
	if err != nil {
		a.c.log.Warn("recoup incomplete", "err", err)
		res.Incomplete = err.Error()
	}
	writeAPIJSON(w, http.StatusOK, res)
}

// PutResult is the answer of POST /put.
type PutResult struct {
	// Capability reads the file; it is a secret.
	Capability string     `json:"capability"`
	Report     *PutReport `json:"report"`
}

// PutEvent is one line of POST /put?progress=1: progress events, then
// one with the result or the error.
type PutEvent struct {
	Progress *PutProgress `json:"progress,omitempty"`
	Result   *PutResult   `json:"result,omitempty"`
	Error    *APIError    `json:"error,omitempty"`
}

func (a *clientAPI) put(w http.ResponseWriter, r *http.Request) {
	// With the file's size known, Put allocates at once and writes shares
	// while it reads the body; otherwise it reads the body to its end
	// (into its spool file) first.
	size := r.ContentLength
	if q := r.URL.Query().Get("size"); q != "" {
		v, err := strconv.ParseInt(q, 10, 64)
		if err != nil || v < 0 {
			writeAPIError(w, fmt.Errorf("%w: size is not a number of bytes", errAPIBadRequest))
			return
		}
		if size >= 0 && size != v {
			writeAPIError(w, fmt.Errorf("%w: size %d and Content-Length %d differ", errAPIBadRequest, v, size))
			return
		}
		size = v
	}
	if r.URL.Query().Get("progress") == "" {
		capab, rep, err := a.c.Put(r.Context(), r.Body, WithPutSize(size))
		if err != nil {
			writeAPIError(w, err)
			return
		}
		writeAPIJSON(w, http.StatusOK, PutResult{Capability: capab, Report: rep})
		return
	}
	// Stream events. HTTP/1 servers stop reading a body once they write,
	// and Put may place shares while it reads the body: events start once
	// the body is read to its end (the next one tells all done by then).
	var mu sync.Mutex
	started := false
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	emit := func(ev PutEvent) {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		enc.Encode(ev)
		if flusher != nil {
			flusher.Flush()
		}
	}
	body := &endReader{r: bufio.NewReader(r.Body)}
	last := time.Time{}
	capab, rep, err := a.c.Put(r.Context(), body, WithPutSize(size), WithPutProgress(func(p PutProgress) {
		if !body.ended.Load() {
			return
		}
		if now := time.Now(); now.Sub(last) > 100*time.Millisecond || p.SharesPlaced == p.SharesTotal {
			last = now
			emit(PutEvent{Progress: &p})
		}
	}))
	if err != nil {
		_, kind := APIErrorKind(err)
		mu.Lock()
		s := started
		mu.Unlock()
		if !s {
			writeAPIError(w, err)
			return
		}
		emit(PutEvent{Error: &APIError{Error: oneLine(err.Error()), Kind: kind}})
		return
	}
	emit(PutEvent{Result: &PutResult{Capability: capab, Report: rep}})
}

// endReader notes when its reader has ended (or failed).
type endReader struct {
	r     io.Reader
	ended atomic.Bool
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.ended.Store(true)
	}
	return n, err
}

// lazyWriter sets the answer's headers on the first write, so that a Get
// that fails before writing can still answer with an error.
type lazyWriter struct {
	w       http.ResponseWriter
	size    uint64
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", "application/octet-stream")
		l.w.Header().Set("Content-Length", strconv.FormatUint(l.size, 10))
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

// GetRequest is the body of POST /get. The capability is the file's read
// key: it travels in the body, never in the URL.
type GetRequest struct {
	Capability string `json:"capability"`
}

func (a *clientAPI) get(w http.ResponseWriter, r *http.Request) {
	var req GetRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeAPIError(w, fmt.Errorf(`%w: the body is not {"capability": CAP}`, errAPIBadRequest))
		return
	}
	capText := strings.TrimSpace(req.Capability)
	capab, err := files.ParseCapability(capText)
	if err != nil {
		writeAPIError(w, fmt.Errorf("%w: %w", ErrBadCapability, err))
		return
	}
	lw := &lazyWriter{w: w, size: capab.Size}
	_, err = a.c.Get(r.Context(), capText, lw)
	switch {
	case err == nil && !lw.started:
		lw.Write(nil) // an empty file
	case err != nil && !lw.started:
		writeAPIError(w, err)
	case err != nil:
		// Part of the file went out: break the connection so that the
		// client sees it short of its Content-Length.
		panic(http.ErrAbortHandler)
	}
}

func (a *clientAPI) wait(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	want := 1
	if s := q.Get("min"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeAPIError(w, fmt.Errorf("%w: min must be a count of servers", errAPIBadRequest))
			return
		}
		want = n
	}
	timeout := 30 * time.Second
	if s := q.Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			writeAPIError(w, fmt.Errorf("%w: timeout must be a duration such as 30s", errAPIBadRequest))
			return
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	n, err := a.c.WaitConnected(ctx, want)
	if err != nil {
		writeAPIError(w, &kindError{msg: fmt.Sprintf("%d of %d servers connected after %v", n, want, timeout), kind: context.DeadlineExceeded})
		return
	}
	writeAPIJSON(w, http.StatusOK, map[string]int{"connected": n})
}

// ---- small helpers ----

// clientJSON encodes v, which cannot fail to encode.
func clientJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic("client: encoding JSON: " + err.Error())
	}
	return append(b, '\n')
}
