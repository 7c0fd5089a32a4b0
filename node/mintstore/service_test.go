package mintstore

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// The mint service of package protocol on real libp2p hosts on
// 127.0.0.1, with a Store and Keys: withdrawals, their retries, the
// refusal of other challenges, and the same after the store is closed and
// reopened, as after a restart of the mint.

// mintNode is a mint: a host, and a store, keys, voucher funding and the
// mint service over them, which restart replaces.
type mintNode struct {
	t       *testing.T
	path    string
	host    host.Host
	clock   *clock
	store   *Store
	keys    *Keys
	funding *protocol.VoucherFunding
}

func newHost(t *testing.T, listen string) host.Host {
	t.Helper()
	opt := libp2p.NoListenAddrs
	if listen != "" {
		opt = libp2p.ListenAddrStrings(listen)
	}
	h, err := libp2p.New(opt)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	return h
}

func startMint(t *testing.T, listen string) *mintNode {
	m := &mintNode{t: t, path: filepath.Join(t.TempDir(), "mint.db"), host: newHost(t, listen), clock: &clock{now: t0}}
	m.start()
	return m
}

// start opens the store and the keys and serves the mint on its host.
func (m *mintNode) start() {
	t := m.t
	ctx := context.Background()
	s, err := Open(m.path)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	m.store = s
	m.keys, err = OpenKeys(ctx, s, testIdentity, WithClock(m.clock.Now))
	require.NoError(t, err)
	_, err = m.keys.Rotate(ctx, testPolicy)
	require.NoError(t, err)
	m.funding = protocol.NewVoucherFunding(s, [32]byte{'p', 'a', 'y'})
	svc := protocol.NewMintService(m.host.ID(), m.keys.Keyring(), s, m.funding, protocol.WithMintClock(m.clock.Now))
	require.NoError(t, svc.Register(m.host, protocol.WithHandleTimeout(20*time.Second)))
	require.NoError(t, svc.ResumePayouts(ctx))
}

// restart closes the store and starts again from the file.
func (m *mintNode) restart() {
	m.host.RemoveStreamHandler(protocol.MintID)
	require.NoError(m.t, m.store.Close())
	m.start()
}

// client dials the mint from a new host.
func (m *mintNode) client(t *testing.T) (*protocol.MintClient, host.Host) {
	h := newHost(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, h.Connect(ctx, peer.AddrInfo{ID: m.host.ID(), Addrs: m.host.Addrs()}))
	return protocol.NewMintClient(h, m.host.ID(), testIdentity.Public().(ed25519.PublicKey)), h
}

func (m *mintNode) voucher(value uint64) string {
	code, err := m.funding.CreateVoucher(context.Background(), rand.Reader, "msat", value)
	require.NoError(m.t, err)
	return code
}

func (m *mintNode) remaining(code string) uint64 {
	a, err := m.funding.Voucher(context.Background(), code)
	require.NoError(m.t, err)
	return a.Remaining
}

// active returns the keyset the mint issues from.
func (m *mintNode) active() *coin.Keyset {
	for _, p := range m.keys.Keysets() {
		if !p.Revoked && p.Keyset.Open(coin.WindowIssue, m.clock.Now()) {
			return p.Keyset
		}
	}
	m.t.Fatal("no active keyset")
	return nil
}

// wallet derives withdrawals from a seed and a counter.
type wallet struct {
	seed    [32]byte
	counter uint64
}

func (w *wallet) withdrawals(t *testing.T, ks *coin.Keyset, des [32]byte, amounts ...uint64) []*coin.Withdrawal {
	out := make([]*coin.Withdrawal, len(amounts))
	for i, a := range amounts {
		w.counter++
		wd, err := coin.NewWithdrawal(&w.seed, w.counter, ks, a, des)
		require.NoError(t, err)
		out[i] = wd
	}
	return out
}

// challenges runs round one for ws and returns their challenges.
func challenges(ctx context.Context, t *testing.T, mc *protocol.MintClient, ks *coin.Keyset, ws []*coin.Withdrawal) []protocol.BlindChallenge {
	wc := make([]protocol.WithdrawCoin, len(ws))
	for i, w := range ws {
		wc[i] = protocol.WithdrawCoin{Amount: w.Amount(), Nonce: w.Nonce()}
	}
	cms, err := mc.WithdrawBegin(ctx, ks.ID(), wc)
	require.NoError(t, err)
	chs := make([]protocol.BlindChallenge, len(ws))
	for i, w := range ws {
		c0, c1, err := w.Challenges(cms[i].R0, cms[i].R1)
		require.NoError(t, err)
		chs[i] = protocol.BlindChallenge{Amount: w.Amount(), Nonce: w.Nonce(), C0: c0, C1: c1}
	}
	return chs
}

func finish(t *testing.T, ws []*coin.Withdrawal, answers []coin.Answer) []*coin.Coin {
	coins := make([]*coin.Coin, len(ws))
	for i, w := range ws {
		c, err := w.Finish(answers[i])
		require.NoError(t, err, "coin %d", i)
		coins[i] = c
	}
	return coins
}

func isNonceReused(t *testing.T, err error) {
	t.Helper()
	var e *protocol.Error
	require.ErrorAs(t, err, &e)
	require.ErrorIs(t, err, protocol.ErrBadRequest)
	require.Equal(t, protocol.ErrNonceReused.Message, e.Message)
}

func TestService(t *testing.T) {
	for _, tr := range []struct{ name, addr string }{
		{"tcp", "/ip4/127.0.0.1/tcp/0"},
		{"quic", "/ip4/127.0.0.1/udp/0/quic-v1"},
	} {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			testService(t, tr.addr)
		})
	}
}

func testService(t *testing.T, addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := startMint(t, addr)
	mc, _ := m.client(t)
	ks := m.active()
	w := &wallet{seed: [32]byte{'s', 'e', 'e', 'd'}}
	var bearer [32]byte
	code := m.voucher(1000)
	amounts := []uint64{1, 2, 4, 8, 16, 32, 64, 128}
	ws := w.withdrawals(t, ks, bearer, amounts...)
	chs := challenges(ctx, t, mc, ks, ws)
	answers, err := mc.WithdrawFinish(ctx, ks.ID(), []byte(code), chs)
	require.NoError(t, err)
	coins := finish(t, ws, answers)
	v := coin.Verifier{Keysets: coin.KeysetMap{ks.ID(): ks}, Server: []byte("any server"), Window: coin.WindowSpend}
	for i, c := range coins {
		require.Equal(t, amounts[i], c.Amount)
		require.NoError(t, v.VerifyCoin(c, t0))
	}
	require.Equal(t, uint64(1000-255), m.remaining(code))

	// otherChallenges are challenges for the nonce of ws[3] made for
	// another coin (another designation): the same nonce, other
	// challenges.
	w3, err := coin.NewWithdrawal(&w.seed, 4, ks, 8, coin.Designation([]byte("a server")))
	require.NoError(t, err)
	require.Equal(t, ws[3].Nonce(), w3.Nonce())
	other := challenges(ctx, t, mc, ks, []*coin.Withdrawal{w3})

	retries := func(t *testing.T) {
		again, err := mc.WithdrawFinish(ctx, ks.ID(), []byte(code), chs)
		require.NoError(t, err)
		require.Equal(t, answers, again, "retry answered from the rows")
		require.Equal(t, uint64(1000-255), m.remaining(code), "retry charged")
		_, err = mc.WithdrawFinish(ctx, ks.ID(), []byte(code), append([]protocol.BlindChallenge{chs[0]}, other...))
		isNonceReused(t, err)
		_, err = mc.WithdrawFinish(ctx, ks.ID(), []byte(code), other)
		isNonceReused(t, err)
		require.Equal(t, uint64(1000-255), m.remaining(code), "refusal charged")
	}
	t.Run("retries", retries)

	t.Run("concurrent finishes for one nonce", func(t *testing.T) {
		const n = 16
		code := m.voucher(100)
		w.counter++
		cws := make([]*coin.Withdrawal, n)
		cchs := make([]protocol.BlindChallenge, n)
		for j := range cws {
			cws[j], err = coin.NewWithdrawal(&w.seed, w.counter, ks, 4, coin.Designation([]byte{byte(j), 'd'}))
			require.NoError(t, err)
			cchs[j] = challenges(ctx, t, mc, ks, cws[j:j+1])[0]
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([][]coin.Answer, n)
		errs := make([]error, n)
		for j := range n {
			wg.Go(func() {
				<-start
				results[j], errs[j] = mc.WithdrawFinish(ctx, ks.ID(), []byte(code), cchs[j:j+1])
			})
		}
		close(start)
		wg.Wait()
		winners := 0
		for j := range n {
			if errs[j] == nil {
				winners++
				finish(t, cws[j:j+1], results[j])
				continue
			}
			isNonceReused(t, errs[j])
		}
		require.Equal(t, 1, winners)
		require.Equal(t, uint64(96), m.remaining(code))
	})

	// Swap an 8 into 4 + 2 + 1 + 1, and deposit coins at a server.
	outs := w.withdrawals(t, ks, bearer, 4, 2, 1, 1)
	swapBody, err := protocol.NewSwapBody([16]byte{'s', 'w'}, ks.ID(), challenges(ctx, t, mc, ks, outs))
	require.NoError(t, err)
	sp, err := coin.NewSpend(coins[3], ws[3].CoinKey(), []byte(m.host.ID()), protocol.RequestDigest(protocol.MintID, swapBody))
	require.NoError(t, err)
	swapAnswers, err := mc.Swap(ctx, swapBody, []*coin.Spend{sp})
	require.NoError(t, err)
	finish(t, outs, swapAnswers)
	sc, sh := m.client(t)
	digest := sha256.Sum256([]byte("request"))
	items := []coin.Item{{Spend: spendFor(t, coins[0], ws[0], sh.ID(), digest), Digest: digest},
		{Spend: spendFor(t, coins[7], ws[7], sh.ID(), digest), Digest: digest}}
	rs, err := sc.Deposit(ctx, items)
	require.NoError(t, err)
	require.Equal(t, pb.DepositStatus_DEPOSIT_CREDITED, rs[0].Status)
	require.Equal(t, pb.DepositStatus_DEPOSIT_CREDITED, rs[1].Status)
	payout, err := sc.Payout(ctx, [16]byte{'p'}, protocol.UnitAmount{Unit: "msat", Amount: 100}, nil)
	require.NoError(t, err)
	require.Equal(t, uint64(29), payout.Remaining)

	m.restart()

	t.Run("after a restart", func(t *testing.T) {
		got, err := mc.Keysets(ctx)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, ks.Bytes(), got[0].Keyset.Bytes())
		retries(t)

		// A wallet restored from its seed gets its coins back.
		nonces := make([][32]byte, len(ws))
		for i := range ws {
			nonces[i] = ws[i].Nonce()
		}
		restored, err := mc.Restore(ctx, nonces)
		require.NoError(t, err)
		require.Len(t, restored, len(ws))
		fresh := &wallet{seed: w.seed}
		for i, r := range restored {
			wd := fresh.withdrawals(t, ks, bearer, r.Amount)[0]
			c0, c1, err := wd.Challenges(r.Commitments.R0, r.Commitments.R1)
			require.NoError(t, err)
			require.True(t, r.Matches(c0, c1))
			c, err := wd.Finish(r.Answer)
			require.NoError(t, err)
			require.Equal(t, coins[i].Bytes(), c.Bytes())
		}

		again, err := mc.Swap(ctx, swapBody, []*coin.Spend{sp})
		require.NoError(t, err)
		require.Equal(t, swapAnswers, again, "swap retry")
		rs, err := sc.Deposit(ctx, items)
		require.NoError(t, err)
		require.Equal(t, pb.DepositStatus_DEPOSIT_ALREADY_CREDITED, rs[0].Status)
		p2, err := sc.Payout(ctx, [16]byte{'p'}, protocol.UnitAmount{Unit: "msat", Amount: 100}, nil)
		require.NoError(t, err)
		require.Equal(t, payout.Receipt, p2.Receipt, "payout paid once")
		bal, err := sc.Balance(ctx)
		require.NoError(t, err)
		require.Equal(t, []protocol.UnitAmount{{Unit: "msat", Amount: 29}}, bal)
		require.NoError(t, m.store.Check(ctx))
	})

	t.Run("revoked", func(t *testing.T) {
		require.NoError(t, m.keys.Revoke(ctx, ks.ID()))
		_, err := mc.WithdrawBegin(ctx, ks.ID(), []protocol.WithdrawCoin{{Amount: 1, Nonce: [32]byte{1}}})
		require.ErrorIs(t, err, protocol.ErrRevokedKeyset)
		rs, err := sc.Deposit(ctx, []coin.Item{{Spend: spendFor(t, coins[1], ws[1], sh.ID(), digest), Digest: digest}})
		require.NoError(t, err)
		require.Equal(t, pb.DepositStatus_DEPOSIT_REVOKED, rs[0].Status)
		m.restart() // rotates: the revoked keyset is replaced
		got, err := mc.Keysets(ctx)
		require.NoError(t, err)
		require.Len(t, got, 2)
		for _, p := range got {
			assert.Equal(t, p.Keyset.ID() == ks.ID(), p.Revoked)
		}
		e := auditOf(t, m.store, ks.ID(), 8)
		assert.Equal(t, AuditEntry{KeysetID: ks.ID(), Amount: 8, Key: e.Key, Withdrawn: 1, SwapIn: 1}, e)
	})
}

func spendFor(t *testing.T, c *coin.Coin, w *coin.Withdrawal, server peer.ID, digest [32]byte) *coin.Spend {
	t.Helper()
	sp, err := coin.NewSpend(c, w.CoinKey(), []byte(server), digest)
	require.NoError(t, err)
	return sp
}
