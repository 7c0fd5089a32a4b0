package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// The mint's admin endpoint: HTTP on a loopback address, never on libp2p.
//
//	POST /vouchers              {"amount": N, "unit": "msat"} → {"code": ..., "unit": ..., "amount": N}
//	POST /vouchers/lookup       {"code": CODE} → {"unit": ..., "value": N, "remaining": N}
//	GET  /keysets               → [KeysetInfo, ...]
//	POST /keysets/rotate        → KeysetInfo of the new keyset
//	POST /keysets/{id}/revoke   → {"revoked": id}
//	GET  /audit                 → AuditReport
//	GET  /backup                → a backup of the store (application/octet-stream; mintguard.go)
//	GET  /metrics               Prometheus text format
//
// Every call, /metrics included, carries "Authorization: Bearer TOKEN",
// the token of the mint's admin file ([MintAdminFile]), which only the
// mint's owner can read: a loopback address alone would let any local
// user, or a web page through the user's browser, create money. (Give
// Prometheus a metrics endpoint of its own, [ServeMetrics], not this
// token.) Voucher codes travel in request bodies, never in URLs, which
// end up in logs. Requests whose Host header does not name the endpoint
// (DNS rebinding) and browsers' cross-site requests are refused with 403
// before the token is looked at (see guardLocal). Errors are answered as
// {"error": "..."} with an HTTP status.

// Errors of the admin endpoint's client.
var (
	// ErrAdminUnreachable reports an admin endpoint that could not be
	// reached: no mint running there, or a wrong address.
	ErrAdminUnreachable = errors.New("node: mint admin endpoint unreachable")
	// ErrAdminUnauthorized reports a request refused for a missing or
	// wrong token.
	ErrAdminUnauthorized = errors.New("node: mint admin endpoint refused the token")
)

// maxAdminBody bounds the body of an admin request.
const maxAdminBody = 4 << 10

// AdminInfo is the content of a mint's admin file: where its admin
// endpoint listens and the token it wants.
type AdminInfo struct {
	URL   string `json:"url"`
	Token string `json:"token"`
}

// ReadAdminInfo reads the admin file of the mint whose directory is dir.
func ReadAdminInfo(dir string) (AdminInfo, error) {
	var a AdminInfo
	b, err := os.ReadFile(filepath.Join(dir, MintAdminFile))
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("node: mint admin file %s: %w", filepath.Join(dir, MintAdminFile), err)
	}
	return a, nil
}

// KeysetInfo describes a keyset for the admin endpoint. Times are Unix
// seconds.
type KeysetInfo struct {
	ID           string   `json:"id"` // hex
	Unit         string   `json:"unit"`
	NotBefore    int64    `json:"not_before"`
	IssueUntil   int64    `json:"issue_until"`
	SpendUntil   int64    `json:"spend_until"`
	DepositUntil int64    `json:"deposit_until"`
	Amounts      []uint64 `json:"amounts"`
	Revoked      bool     `json:"revoked"`
	// Retired is set for a keyset retired after a restore of the store:
	// it issues no more, and its coins stay good.
	Retired bool `json:"retired,omitempty"`
}

func keysetInfo(ks *coin.Keyset, revoked bool) KeysetInfo {
	return KeysetInfo{
		ID: keysetIDString(ks.ID()), Unit: ks.Unit,
		NotBefore: ks.NotBefore, IssueUntil: ks.IssueUntil, SpendUntil: ks.SpendUntil, DepositUntil: ks.DepositUntil,
		Amounts: ks.Amounts(), Revoked: revoked,
	}
}

func keysetIDString(id [32]byte) string { return hex.EncodeToString(id[:]) }

// AuditReport is the mint's audit (mintstore.Store.Audit): per
// denomination key, the coins issued and spent. Overspent is set if any
// key has more spent than issued: its secret leaked, and its keyset must
// be revoked.
type AuditReport struct {
	Overspent bool         `json:"overspent"`
	Entries   []AuditEntry `json:"entries"`
}

// AuditEntry is one denomination key's line of an [AuditReport].
type AuditEntry struct {
	KeysetID    string `json:"keyset_id"` // hex
	Unit        string `json:"unit,omitempty"`
	Amount      uint64 `json:"amount"`
	Withdrawn   uint64 `json:"withdrawn"`
	SwapOut     uint64 `json:"swap_out"`
	Deposited   uint64 `json:"deposited"`
	SwapIn      uint64 `json:"swap_in"`
	Recouped    uint64 `json:"recouped"`
	IssuedValue uint64 `json:"issued_value"`
	SpentValue  uint64 `json:"spent_value"`
	Overspent   bool   `json:"overspent"`
}

// Audit returns the mint's audit report: the admin call behind GET /audit.
func (m *Mint) Audit(ctx context.Context) (*AuditReport, error) {
	entries, err := m.store.Audit(ctx)
	if err != nil {
		return nil, err
	}
	units := m.units()
	out := &AuditReport{Entries: make([]AuditEntry, 0, len(entries))}
	for _, e := range entries {
		out.Overspent = out.Overspent || e.Overspent
		out.Entries = append(out.Entries, AuditEntry{
			KeysetID: keysetIDString(e.KeysetID), Unit: units[e.KeysetID], Amount: e.Amount,
			Withdrawn: e.Withdrawn, SwapOut: e.SwapOut, Deposited: e.Deposited, SwapIn: e.SwapIn, Recouped: e.Recouped,
			IssuedValue: e.IssuedValue(), SpentValue: e.SpentValue(), Overspent: e.Overspent,
		})
	}
	return out, nil
}

// units maps the keysets the mint holds to their units.
func (m *Mint) units() map[[32]byte]string {
	out := make(map[[32]byte]string)
	for _, p := range m.keys.Keysets() {
		out[p.Keyset.ID()] = p.Keyset.Unit
	}
	return out
}

// AdminURL returns the URL of the admin endpoint, or "" if it has none.
func (m *Mint) AdminURL() string {
	if m.admin == nil {
		return ""
	}
	return m.admin.URL()
}

// AdminToken returns the token the admin endpoint wants.
func (m *Mint) AdminToken() string { return m.token }

// startAdmin starts the admin endpoint and writes the admin file, keeping
// the token of an earlier run.
func (m *Mint) startAdmin() error {
	if old, err := ReadAdminInfo(m.cfg.Dir); err == nil && len(old.Token) == 64 {
		if _, err := hex.DecodeString(old.Token); err == nil {
			m.token = old.Token
		}
	}
	if m.token == "" {
		m.token = newToken()
	}
	e, err := startHTTP(m.cfg.AdminAddr, m.adminHandler())
	if err != nil {
		return fmt.Errorf("node: mint admin endpoint: %w", err)
	}
	m.admin = e
	b, err := json.MarshalIndent(AdminInfo{URL: e.URL(), Token: m.token}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(m.cfg.Dir, MintAdminFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("node: writing the mint admin file: %w", err)
	}
	return nil
}

func (m *Mint) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", requireBearer(metricsHandler(m.registry), adminHint,
		func() []string { return []string{m.token} }))
	mux.HandleFunc("POST /vouchers", m.authed(m.postVoucher))
	mux.HandleFunc("POST /vouchers/lookup", m.authed(m.lookupVoucher))
	mux.HandleFunc("GET /keysets", m.authed(m.getKeysets))
	mux.HandleFunc("POST /keysets/rotate", m.authed(m.postRotate))
	mux.HandleFunc("POST /keysets/{id}/revoke", m.authed(m.postRevoke))
	mux.HandleFunc("GET /audit", m.authed(m.getAudit))
	mux.HandleFunc("GET /backup", m.getBackup)
	return mux
}

// adminHint says where the admin token is.
const adminHint = "missing or wrong token (see " + MintAdminFile + " in the mint's directory)"

// authed checks the bearer token before calling h.
func (m *Mint) authed(h func(w http.ResponseWriter, r *http.Request) (any, int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !bearerOK(r, m.token) {
			refuse(w, http.StatusUnauthorized, "unauthorized", adminHint)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
		v, status, err := h(w, r)
		if err != nil {
			if status == 0 {
				status = http.StatusInternalServerError
			}
			writeJSON(w, status, adminError{err.Error()})
			return
		}
		writeJSON(w, status, v)
	}
}

type adminError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// voucherRequest is the body of POST /vouchers.
type voucherRequest struct {
	Amount uint64 `json:"amount"`
	Unit   string `json:"unit,omitempty"`
}

// voucherAnswer is the answer of POST /vouchers.
type voucherAnswer struct {
	Code   string `json:"code"`
	Unit   string `json:"unit"`
	Amount uint64 `json:"amount"`
}

// voucherLookup is the body of POST /vouchers/lookup: the code is a
// bearer secret, kept out of the URL.
type voucherLookup struct {
	Code string `json:"code"`
}

// voucherState is the answer of POST /vouchers/lookup.
type voucherState struct {
	Unit      string `json:"unit"`
	Value     uint64 `json:"value"`
	Remaining uint64 `json:"remaining"`
}

func (m *Mint) postVoucher(w http.ResponseWriter, r *http.Request) (any, int, error) {
	var req voucherRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("body: %w", err)
	}
	if req.Amount == 0 {
		return nil, http.StatusBadRequest, errors.New("amount must be positive")
	}
	if req.Unit == "" {
		req.Unit = m.policy.Unit
	}
	if req.Unit != m.policy.Unit {
		return nil, http.StatusBadRequest, fmt.Errorf("this mint issues coins in %s only", m.policy.Unit)
	}
	code, err := m.CreateVoucher(r.Context(), req.Unit, req.Amount)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	return voucherAnswer{Code: code, Unit: req.Unit, Amount: req.Amount}, http.StatusOK, nil
}

func (m *Mint) lookupVoucher(w http.ResponseWriter, r *http.Request) (any, int, error) {
	var req voucherLookup
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Code == "" {
		return nil, http.StatusBadRequest, errors.New(`body: want {"code": CODE}`)
	}
	a, err := m.funding.Voucher(r.Context(), strings.TrimSpace(req.Code))
	if errors.Is(err, protocol.ErrUnknownFunding) || errors.Is(err, protocol.ErrNotFound) {
		return nil, http.StatusNotFound, errors.New("no such voucher")
	}
	if err != nil {
		return nil, 0, err
	}
	return voucherState{Unit: a.Unit, Value: a.Value, Remaining: a.Remaining}, http.StatusOK, nil
}

func (m *Mint) getKeysets(w http.ResponseWriter, r *http.Request) (any, int, error) {
	out := []KeysetInfo{}
	for _, p := range m.keys.Keysets() {
		ki := keysetInfo(p.Keyset, p.Revoked)
		ki.Retired = m.keys.Retired(p.Keyset.ID())
		out = append(out, ki)
	}
	return out, http.StatusOK, nil
}

func (m *Mint) postRotate(w http.ResponseWriter, r *http.Request) (any, int, error) {
	ks, err := m.RotateKeyset(r.Context())
	if err != nil {
		return nil, 0, err
	}
	return keysetInfo(ks, false), http.StatusOK, nil
}

func (m *Mint) postRevoke(w http.ResponseWriter, r *http.Request) (any, int, error) {
	b, err := hex.DecodeString(r.PathValue("id"))
	if err != nil || len(b) != 32 {
		return nil, http.StatusBadRequest, errors.New("keyset ID must be 64 hex digits")
	}
	err = m.RevokeKeyset(r.Context(), [32]byte(b))
	if errors.Is(err, protocol.ErrNotFound) {
		return nil, http.StatusNotFound, errors.New("no such keyset")
	}
	if err != nil {
		return nil, 0, err
	}
	return map[string]string{"revoked": hex.EncodeToString(b)}, http.StatusOK, nil
}

func (m *Mint) getAudit(w http.ResponseWriter, r *http.Request) (any, int, error) {
	rep, err := m.Audit(r.Context())
	if err != nil {
		return nil, 0, err
	}
	return rep, http.StatusOK, nil
}

// AdminClient calls a mint's admin endpoint.
type AdminClient struct {
	// URL is the endpoint, such as http://127.0.0.1:7390.
	URL string
	// Token is the bearer token of the mint's admin file.
	Token string
	// HTTP is the client used; nil means NewLocalHTTPClient with a
	// 30-second timeout (no proxy, no redirects: the token stays here).
	HTTP *http.Client
}

// NewAdminClient returns a client of the admin endpoint at url with token.
func NewAdminClient(url, token string) *AdminClient {
	return &AdminClient{URL: strings.TrimRight(url, "/"), Token: token}
}

// do sends one request and decodes its JSON answer into out.
func (c *AdminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
	if err != nil {
		return fmt.Errorf("node: mint admin endpoint %q: %w", c.URL, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = NewLocalHTTPClient(30 * time.Second)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w at %s: %w", ErrAdminUnreachable, c.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("node: mint admin endpoint %s: reading the answer: %w", c.URL, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return ErrAdminUnauthorized
	}
	if resp.StatusCode != http.StatusOK {
		var e adminError
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b[:min(len(b), 200)]))
		}
		err := fmt.Errorf("node: mint admin: %s: %s", resp.Status, e.Error)
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", protocol.ErrNotFound, err)
		}
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("node: mint admin endpoint %s: bad answer: %w", c.URL, err)
	}
	return nil
}

// NewVoucher creates a voucher worth amount of unit (the mint's unit if
// empty) and returns its code.
func (c *AdminClient) NewVoucher(ctx context.Context, unit string, amount uint64) (string, error) {
	var a voucherAnswer
	if err := c.do(ctx, http.MethodPost, "/vouchers", voucherRequest{Amount: amount, Unit: unit}, &a); err != nil {
		return "", err
	}
	return a.Code, nil
}

// Voucher returns the state of a voucher; an unknown code is an error
// wrapping protocol.ErrNotFound. The code goes in the request's body.
func (c *AdminClient) Voucher(ctx context.Context, code string) (protocol.FundingAccount, error) {
	var v voucherState
	if err := c.do(ctx, http.MethodPost, "/vouchers/lookup", voucherLookup{Code: code}, &v); err != nil {
		return protocol.FundingAccount{}, err
	}
	return protocol.FundingAccount{Unit: v.Unit, Value: v.Value, Remaining: v.Remaining}, nil
}

// Keysets lists the mint's keysets.
func (c *AdminClient) Keysets(ctx context.Context) ([]KeysetInfo, error) {
	var out []KeysetInfo
	err := c.do(ctx, http.MethodGet, "/keysets", nil, &out)
	return out, err
}

// RotateKeyset makes the mint start a new keyset now and returns it.
func (c *AdminClient) RotateKeyset(ctx context.Context) (KeysetInfo, error) {
	var out KeysetInfo
	err := c.do(ctx, http.MethodPost, "/keysets/rotate", nil, &out)
	return out, err
}

// RevokeKeyset revokes keyset id; an unknown keyset is an error wrapping
// protocol.ErrNotFound.
func (c *AdminClient) RevokeKeyset(ctx context.Context, id [32]byte) error {
	var out map[string]string
	return c.do(ctx, http.MethodPost, "/keysets/"+keysetIDString(id)+"/revoke", nil, &out)
}

// Audit returns the mint's audit report.
func (c *AdminClient) Audit(ctx context.Context) (*AuditReport, error) {
	out := new(AuditReport)
	if err := c.do(ctx, http.MethodGet, "/audit", nil, out); err != nil {
		return nil, err
	}
	return out, nil
}
