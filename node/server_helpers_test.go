package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// Fixtures of the mint and server tests: roles on real libp2p hosts on
// 127.0.0.1 with real bbolt files, and a minimal wallet on the client
// side, made of package coin and protocol alone.

// roleLog returns a logger for the roles of a test: discarded unless the
// test runs with -v.
func roleLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(roleTestWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type roleTestWriter struct{ t *testing.T }

func (w roleTestWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(b))
	return len(b), nil
}

// roleLeakCheck returns a function that checks, once everything the test
// started is closed, that no goroutine is left over.
func roleLeakCheck(t *testing.T) func() {
	opts := []goleak.Option{goleak.IgnoreCurrent()}
	return func() {
		t.Helper()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		goleak.VerifyNone(t, opts...)
	}
}

// roleMint starts a mint in dir with an admin endpoint on a free port.
func roleMint(t *testing.T, dir string) *Mint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := NewMint(ctx, MintConfig{Dir: dir, AdminAddr: "127.0.0.1:0", Logger: roleLog(t)})
	require.NoError(t, err)
	return m
}

// roleServer starts a server in dir for the mint of ann, with short
// periods, after edit changes its config.
func roleServer(t *testing.T, dir string, ann Announcement, edit func(*ServerConfig)) *Server {
	t.Helper()
	c := ServerConfig{
		Dir:              dir,
		Capacity:         1 << 30,
		Mint:             ann,
		MetricsAddr:      "127.0.0.1:0",
		SchedulePeriod:   time.Hour,
		ScheduleValidity: 2 * time.Hour,
		DepositInterval:  100 * time.Millisecond,
		Logger:           roleLog(t),
	}
	if edit != nil {
		edit(&c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := NewServer(ctx, c)
	require.NoError(t, err)
	return s
}

// roleClient is a client: a host with a fresh identity, connected to the
// mint, and a wallet.
type roleClient struct {
	host   host.Host
	mint   *protocol.MintClient
	wallet *roleWallet
}

func newRoleClient(t *testing.T, m *Mint) *roleClient {
	t.Helper()
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableMetrics())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := Connect(ctx, h, m.Announcement(), "")
	require.NoError(t, err)
	identity, err := MintIdentity(m.Announcement())
	require.NoError(t, err)
	w := &roleWallet{keys: make(map[[32]byte]ed25519.PrivateKey), spentAt: make(map[peer.ID]uint64)}
	_, err = rand.Read(w.seed[:])
	require.NoError(t, err)
	return &roleClient{host: h, mint: protocol.NewMintClient(h, id, identity), wallet: w}
}

// connect connects the client to a server.
func (c *roleClient) connect(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Connect(ctx, c.host, s.Announcement(), "")
	require.NoError(t, err)
}

// storage returns a storage client paying from the wallet.
func (c *roleClient) storage() *protocol.StorageClient {
	return protocol.NewStorageClient(protocol.NewPaidClient(c.host, c.wallet))
}

// issuing returns a keyset of the mint's that issues now.
func (c *roleClient) issuing(t *testing.T) *coin.Keyset {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	published, err := c.mint.Keysets(ctx)
	require.NoError(t, err)
	for i := len(published) - 1; i >= 0; i-- {
		if p := published[i]; !p.Revoked && p.Keyset.Open(coin.WindowIssue, time.Now()) {
			return p.Keyset
		}
	}
	t.Fatal("the mint has no keyset issuing")
	return nil
}

// withdraw withdraws coins of the given amounts from keyset ks, paid with
// voucher, designated to server (or bearer coins if server is empty).
func (c *roleClient) withdraw(t *testing.T, ks *coin.Keyset, voucher string, server peer.ID, amounts ...uint64) []*coin.Coin {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var designated [32]byte
	if server != "" {
		designated = coin.Designation([]byte(server))
	}
	w := c.wallet
	ws := make([]*coin.Withdrawal, len(amounts))
	wcs := make([]protocol.WithdrawCoin, len(amounts))
	for i, a := range amounts {
		var err error
		w.mu.Lock()
		ws[i], err = coin.NewWithdrawal(&w.seed, w.counter, ks, a, designated)
		w.counter++
		w.mu.Unlock()
		require.NoError(t, err)
		wcs[i] = protocol.WithdrawCoin{Amount: a, Nonce: ws[i].Nonce()}
	}
	commitments, err := c.mint.WithdrawBegin(ctx, ks.ID(), wcs)
	require.NoError(t, err)
	chs := make([]protocol.BlindChallenge, len(ws))
	for i, wd := range ws {
		c0, c1, err := wd.Challenges(commitments[i].R0, commitments[i].R1)
		require.NoError(t, err)
		chs[i] = protocol.BlindChallenge{Amount: wd.Amount(), Nonce: wd.Nonce(), C0: c0, C1: c1}
	}
	answers, err := c.mint.WithdrawFinish(ctx, ks.ID(), []byte(voucher), chs)
	require.NoError(t, err)
	out := make([]*coin.Coin, len(ws))
	for i, wd := range ws {
		cn, err := wd.Finish(answers[i])
		require.NoError(t, err)
		w.add(cn, wd.CoinKey())
		out[i] = cn
	}
	return out
}

// roleWallet is a minimal protocol.Payer: coins in memory; a coin whose
// spend was refused comes back, any other is counted as spent at its
// server.
type roleWallet struct {
	mu      sync.Mutex
	seed    [32]byte
	counter uint64
	coins   []*coin.Coin
	keys    map[[32]byte]ed25519.PrivateKey
	spentAt map[peer.ID]uint64
	pubs    [][32]byte // every coin spent, in order
}

var _ protocol.Payer = (*roleWallet)(nil)

func (w *roleWallet) add(c *coin.Coin, key ed25519.PrivateKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.coins = append(w.coins, c)
	w.keys[c.Pub] = key
}

// Pay implements protocol.Payer with coins usable at server: coins
// designated to it, and then bearer coins.
func (w *roleWallet) Pay(ctx context.Context, server peer.ID, requestID []byte, unit string, amount uint64, digest [protocol.DigestSize]byte) ([]*coin.Spend, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	mine := coin.Designation([]byte(server))
	var idxs []int
	var amounts []uint64
	// Designated coins first: Select keeps that order among equal amounts.
	for _, designated := range []bool{true, false} {
		for i, c := range w.coins {
			if designated && c.Designated == mine || !designated && c.Designated == ([32]byte{}) {
				idxs = append(idxs, i)
				amounts = append(amounts, c.Amount)
			}
		}
	}
	sel, err := coin.Select(amounts, amount)
	if err != nil {
		return nil, err
	}
	var out []*coin.Spend
	var take []int
	for _, j := range sel {
		c := w.coins[idxs[j]]
		s, err := coin.NewSpend(c, w.keys[c.Pub], []byte(server), digest)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		take = append(take, idxs[j])
	}
	slices.Sort(take)
	for j := len(take) - 1; j >= 0; j-- {
		w.coins = slices.Delete(w.coins, take[j], take[j]+1)
	}
	return out, nil
}

// Settle implements protocol.Payer.
func (w *roleWallet) Settle(ctx context.Context, server peer.ID, requestID []byte, spends []*coin.Spend, outcome protocol.Outcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range spends {
		if outcome == protocol.OutcomeRefused {
			cn := s.Coin
			w.coins = append(w.coins, &cn)
			continue
		}
		w.spentAt[server] += s.Amount
		w.pubs = append(w.pubs, s.Pub)
	}
}

func (w *roleWallet) spent(server peer.ID) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.spentAt[server]
}

// roleAdmin returns a client of the mint's admin endpoint, from the admin
// file in the mint's directory.
func roleAdmin(t *testing.T, dir string) *AdminClient {
	t.Helper()
	info, err := ReadAdminInfo(dir)
	require.NoError(t, err)
	return NewAdminClient(info.URL, info.Token)
}

// roleBalance returns the server's balance at the mint in unit.
func roleBalance(t *testing.T, s *Server, unit string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bs, err := s.Balance(ctx)
	require.NoError(t, err)
	for _, b := range bs {
		if b.Unit == unit {
			return b.Amount
		}
	}
	return 0
}

// roleGet fetches url and returns the body.
func roleGet(t *testing.T, url string) string {
	t.Helper()
	return roleGetToken(t, url, "")
}

// roleGetToken fetches url with a bearer token, if not empty, and returns
// the body.
func roleGetToken(t *testing.T, url, token string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	return string(b)
}

// roleChange returns amounts of small coins, n of each of 1, 2, 4 and 8,
// so that any small price can be paid exactly.
func roleChange(n int) []uint64 {
	var out []uint64
	for _, a := range []uint64{8, 4, 2, 1} {
		for range n {
			out = append(out, a)
		}
	}
	return out
}

func roleDirs(t *testing.T) (mint, s1, s2 string) {
	root := t.TempDir()
	return filepath.Join(root, "mint"), filepath.Join(root, "s1"), filepath.Join(root, "s2")
}
