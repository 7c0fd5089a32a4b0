package node

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/mintstore"
	"github.com/scripnet/scrip/protocol"
)

// Tests of a mint restored from a copy of its store (mintguard.go and
// mintstore's restore guard), end to end: a real mint on libp2p, real
// bbolt files, Clause Blind Schnorr withdrawals from a client.

// guardLog collects a mint's log.
type guardLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *guardLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *guardLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// guardClock is a settable clock.
type guardClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *guardClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *guardClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type guardEnv struct {
	t     *testing.T
	dir   string
	clock *guardClock
	log   *guardLog
	seed  [32]byte
	ctr   uint64
	hosts []io.Closer
}

// closeHosts closes the clients' hosts, before the leak check.
func (e *guardEnv) closeHosts() {
	for _, h := range e.hosts {
		h.Close()
	}
}

func newGuardEnv(t *testing.T) *guardEnv {
	return &guardEnv{t: t, dir: t.TempDir(), clock: &guardClock{now: time.Now()}, log: new(guardLog), seed: [32]byte{'s'}}
}

func (e *guardEnv) start() *Mint {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := NewMint(ctx, MintConfig{Dir: e.dir, AdminAddr: "127.0.0.1:0", Clock: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(e.log, nil))})
	require.NoError(e.t, err)
	return m
}

// client dials m from a fresh host.
func (e *guardEnv) client(m *Mint) *protocol.MintClient {
	t := e.t
	t.Helper()
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.DisableMetrics())
	require.NoError(t, err)
	e.hosts = append(e.hosts, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := Connect(ctx, h, m.Announcement(), "")
	require.NoError(t, err)
	identity, err := MintIdentity(m.Announcement())
	require.NoError(t, err)
	return protocol.NewMintClient(h, id, identity)
}

// newest returns the keyset a wallet withdraws from: the newest (by
// not_before) that is open for issuance and not revoked, as
// node.Client.issueKeyset picks it.
func (e *guardEnv) newest(mc *protocol.MintClient) *coin.Keyset {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps, err := mc.Keysets(ctx)
	require.NoError(e.t, err)
	for i := len(ps) - 1; i >= 0; i-- {
		if !ps[i].Revoked && ps[i].Keyset.Open(coin.WindowIssue, e.clock.Now()) {
			return ps[i].Keyset
		}
	}
	e.t.Fatal("no keyset issues")
	return nil
}

// withdrawal is one coin's withdrawal, its round one done.
type withdrawal struct {
	w  *coin.Withdrawal
	ch protocol.BlindChallenge
}

// begin derives the next withdrawal of a 1-unit coin of ks (designated
// to des) and runs round one.
func (e *guardEnv) begin(mc *protocol.MintClient, ks *coin.Keyset, des string) (*withdrawal, error) {
	e.ctr++
	return e.beginAt(mc, ks, e.ctr, des)
}

func (e *guardEnv) beginAt(mc *protocol.MintClient, ks *coin.Keyset, ctr uint64, des string) (*withdrawal, error) {
	var d [32]byte
	if des != "" {
		d = coin.Designation([]byte(des))
	}
	w, err := coin.NewWithdrawal(&e.seed, ctr, ks, 1, d)
	require.NoError(e.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cms, err := mc.WithdrawBegin(ctx, ks.ID(), []protocol.WithdrawCoin{{Amount: 1, Nonce: w.Nonce()}})
	if err != nil {
		return nil, err
	}
	c0, c1, err := w.Challenges(cms[0].R0, cms[0].R1)
	require.NoError(e.t, err)
	return &withdrawal{w: w, ch: protocol.BlindChallenge{Amount: 1, Nonce: w.Nonce(), C0: c0, C1: c1}}, nil
}

// finish runs round two and returns the answer.
func (e *guardEnv) finish(mc *protocol.MintClient, ks *coin.Keyset, voucher string, wd *withdrawal) (coin.Answer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := mc.WithdrawFinish(ctx, ks.ID(), []byte(voucher), []protocol.BlindChallenge{wd.ch})
	if err != nil {
		return coin.Answer{}, err
	}
	return a[0], nil
}

func (e *guardEnv) withdraw(mc *protocol.MintClient, ks *coin.Keyset, voucher string) (*withdrawal, *coin.Coin, coin.Answer) {
	e.t.Helper()
	wd, err := e.begin(mc, ks, "")
	require.NoError(e.t, err)
	a, err := e.finish(mc, ks, voucher, wd)
	require.NoError(e.t, err)
	c, err := wd.w.Finish(a)
	require.NoError(e.t, err)
	return wd, c, a
}

// TestMintRestoredFromBackup: a backup taken through the admin endpoint,
// a coin withdrawn after it, the backup put in place of the store, the
// mint started again. The keyset that issued is retired: round one is
// refused for it, the nonce answered after the backup gets no second
// answer (other challenges or the same), the row the backup holds is
// still answered and restored, and its coins, even the one issued after
// the backup, are good; a fresh keyset is the one a wallet picks, and
// issues.
func TestMintRestoredFromBackup(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newGuardEnv(t)
	defer e.closeHosts()
	m := e.start()
	voucher, err := m.CreateVoucher(ctx, "", 1000)
	require.NoError(t, err)
	mc := e.client(m)
	ks1 := e.newest(mc)
	wdA, _, ansA := e.withdraw(mc, ks1, voucher)

	admin := NewAdminClient(m.AdminURL(), m.AdminToken())
	backup := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backup)
	require.NoError(t, err)
	_, err = admin.Backup(ctx, f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	info, err := mintstore.ReadBackupInfo(backup)
	require.NoError(t, err)
	assert.Equal(t, [][32]byte{ks1.ID()}, info.Issuing)
	_, err = NewAdminClient(m.AdminURL(), "wrong").Backup(ctx, &bytes.Buffer{})
	assert.ErrorIs(t, err, ErrAdminUnauthorized)

	wdB, coinB, _ := e.withdraw(mc, ks1, voucher) // after the backup
	// Round one of a swap output of ks1, kept for later.
	out1, err := e.begin(mc, ks1, "")
	require.NoError(t, err)
	require.NoError(t, m.Close())

	// Restore: the backup in place of the store.
	b, err := os.ReadFile(backup)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(e.dir, MintStoreFile), b, 0o600))
	e.clock.Add(time.Minute)
	m = e.start()
	defer m.Close()
	assert.Contains(t, e.log.String(), "restored from a copy")
	assert.Contains(t, e.log.String(), keysetIDString(ks1.ID()))
	assert.True(t, m.Keys().Retired(ks1.ID()))
	mc = e.client(m)

	// The keyset stays published and unrevoked; a fresh one is newest.
	ps, err := mc.Keysets(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 2)
	assert.Equal(t, ks1.ID(), ps[0].Keyset.ID())
	assert.False(t, ps[0].Revoked)
	ks2 := e.newest(mc)
	require.NotEqual(t, ks1.ID(), ks2.ID())
	kis, err := NewAdminClient(m.AdminURL(), m.AdminToken()).Keysets(ctx)
	require.NoError(t, err)
	require.Len(t, kis, 2)
	assert.True(t, kis[0].Retired)
	assert.False(t, kis[1].Retired)

	// Round one for the retired keyset: refused.
	_, err = e.begin(mc, ks1, "")
	assert.ErrorIs(t, err, protocol.ErrExpiredKeyset)
	// Round two for the nonce answered after the backup: refused, with
	// other challenges and with the same.
	otherCh := wdB.ch
	otherCh.C0[0] ^= 1
	_, err = e.finish(mc, ks1, voucher, &withdrawal{ch: otherCh})
	assert.ErrorIs(t, err, protocol.ErrExpiredKeyset)
	_, err = e.finish(mc, ks1, voucher, wdB)
	assert.ErrorIs(t, err, protocol.ErrExpiredKeyset)
	// The row the backup holds: answered from the store, and restored.
	a, err := e.finish(mc, ks1, voucher, wdA)
	require.NoError(t, err)
	assert.Equal(t, ansA, a)
	rows, err := mc.Restore(ctx, [][32]byte{wdA.w.Nonce(), wdB.w.Nonce()})
	require.NoError(t, err)
	require.Len(t, rows, 1)
	assert.Equal(t, ansA, rows[0].Answer)

	// The fresh keyset issues.
	e.withdraw(mc, ks2, voucher)

	// The coin issued after the backup is good: swapped into the fresh
	// keyset; a swap into the retired one is refused.
	swap := func(ks *coin.Keyset, out *withdrawal, id byte) error {
		body, err := protocol.NewSwapBody([16]byte{id}, ks.ID(), []protocol.BlindChallenge{out.ch})
		require.NoError(t, err)
		sp, err := coin.NewSpend(coinB, wdB.w.CoinKey(), []byte(m.Host().ID()), protocol.RequestDigest(protocol.MintID, body))
		require.NoError(t, err)
		_, err = mc.Swap(ctx, body, []*coin.Spend{sp})
		return err
	}
	assert.ErrorIs(t, swap(ks1, out1, 1), protocol.ErrExpiredKeyset)
	out2, err := e.begin(mc, ks2, "")
	require.NoError(t, err)
	require.NoError(t, swap(ks2, out2, 2))
	require.NoError(t, m.Store().Check(ctx))
}

// TestMintRestoredFromPlainCopy: a copy of mint.db from an earlier run,
// made with cp, put back: the guard file catches it.
func TestMintRestoredFromPlainCopy(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newGuardEnv(t)
	defer e.closeHosts()
	m := e.start()
	voucher, err := m.CreateVoucher(ctx, "", 1000)
	require.NoError(t, err)
	mc := e.client(m)
	ks1 := e.newest(mc)
	e.withdraw(mc, ks1, voucher)
	require.NoError(t, m.Close())
	db := filepath.Join(e.dir, MintStoreFile)
	old, err := os.ReadFile(db)
	require.NoError(t, err)

	m = e.start()
	mc = e.client(m)
	wdB, _, _ := e.withdraw(mc, ks1, voucher)
	require.NoError(t, m.Close())
	assert.NotContains(t, e.log.String(), "restored from a copy")

	require.NoError(t, os.WriteFile(db, old, 0o600))
	e.clock.Add(time.Minute)
	m = e.start()
	defer m.Close()
	assert.Contains(t, e.log.String(), "behind its guard file")
	assert.True(t, m.Keys().Retired(ks1.ID()))
	mc = e.client(m)
	otherCh := wdB.ch
	otherCh.C1[0] ^= 1
	_, err = e.finish(mc, ks1, voucher, &withdrawal{ch: otherCh})
	assert.ErrorIs(t, err, protocol.ErrExpiredKeyset)
	ks2 := e.newest(mc)
	require.NotEqual(t, ks1.ID(), ks2.ID())
	e.withdraw(mc, ks2, voucher)
}
