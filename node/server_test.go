package node

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// TestGrid runs a mint and two storage servers in one process, on real
// hosts and stores: a voucher made on the admin endpoint buys coins; a
// client stores a share on each server, paying with bearer coins at one
// and designated coins at the other; each server's deposit loop gets its
// coins credited at the mint; a server restarted keeps its shares, its
// spent set and its schedules; the metrics endpoints serve; and once
// everything is closed no goroutine is left.
func TestGrid(t *testing.T) {
	checkLeaks := roleLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	mintDir, dir1, dir2 := roleDirs(t)

	mint := roleMint(t, mintDir)
	defer mint.Close()
	admin := roleAdmin(t, mintDir)
	voucher, err := admin.NewVoucher(ctx, "", 5000)
	require.NoError(t, err)
	acct, err := admin.Voucher(ctx, voucher)
	require.NoError(t, err)
	assert.Equal(t, protocol.FundingAccount{Unit: DefaultUnit, Value: 5000, Remaining: 5000}, acct)

	s1 := roleServer(t, dir1, mint.Announcement(), nil)
	defer func() { s1.Close() }()
	s2 := roleServer(t, dir2, mint.Announcement(), nil)
	defer s2.Close()
	assert.Equal(t, DefaultUnit, s1.Unit())

	client := newRoleClient(t, mint)
	defer client.host.Close()
	client.connect(t, s1)
	client.connect(t, s2)
	ks := client.issuing(t)
	client.withdraw(t, ks, voucher, "", roleChange(10)...)
	client.withdraw(t, ks, voucher, s2.Host().ID(), roleChange(8)...)
	acct, err = admin.Voucher(ctx, voucher)
	require.NoError(t, err)
	assert.Equal(t, uint64(5000-150-120), acct.Remaining)

	// A share on each server: allocate, write, close, read back, list.
	sc := client.storage()
	var si [protocol.StorageIndexSize]byte
	rand.Read(si[:])
	data := []byte("a share of a file, stored for pay")
	for _, s := range []*Server{s1, s2} {
		id := s.Host().ID()
		got, err := sc.Allocate(ctx, id, &pb.Allocate{StorageIndex: si[:], ShareNumbers: []uint32{3}, AllocatedSize: uint64(len(data)), LeaseSeconds: 86400})
		require.NoError(t, err)
		assert.Equal(t, []uint32{3}, got.Allocated)
		require.NoError(t, sc.Write(ctx, id, &pb.Write{StorageIndex: si[:], ShareNumber: 3, Data: data}))
		require.NoError(t, sc.Close(ctx, id, &pb.Close{StorageIndex: si[:], ShareNumber: 3}))
		back, err := sc.Read(ctx, id, &pb.Read{StorageIndex: si[:], ShareNumber: 3, Length: uint64(len(data))})
		require.NoError(t, err)
		assert.Equal(t, data, back)
		list, err := sc.List(ctx, id, &pb.List{StorageIndex: si[:]})
		require.NoError(t, err)
		require.Len(t, list, 1)
	}
	paid1, paid2 := client.wallet.spent(s1.Host().ID()), client.wallet.spent(s2.Host().ID())
	require.NotZero(t, paid1)
	require.NotZero(t, paid2)

	// The deposit loops get every coin credited.
	require.Eventually(t, func() bool {
		return roleBalance(t, s1, DefaultUnit) == paid1 && roleBalance(t, s2, DefaultUnit) == paid2
	}, 10*time.Second, 50*time.Millisecond, "balances %d and %d, paid %d and %d",
		roleBalance(t, s1, DefaultUnit), roleBalance(t, s2, DefaultUnit), paid1, paid2)
	st, err := s1.Spent().Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(0), st.Pending)
	assert.Equal(t, paid1, st.CreditedValue)
	assert.Equal(t, uint64(0), s1.policy.Held())

	// Metrics.
	m1 := roleGet(t, s1.MetricsURL()+"/metrics")
	assert.Contains(t, m1, `scrip_server_calls_total{op="allocate",outcome="ok"} 1`)
	assert.Contains(t, m1, `scrip_server_deposit_credited_value_total `)
	assert.Contains(t, m1, `scrip_server_price{rate="store_per_gib_month",unit="msat"}`)
	assert.Contains(t, m1, `scrip_server_revenue_value_total{unit="msat"}`)
	assert.Contains(t, m1, `scrip_server_deposit_coins_total{status="credited"}`)
	mm := roleGetToken(t, mint.AdminURL()+"/metrics", mint.AdminToken())
	assert.Contains(t, mm, `scrip_mint_issued_value_total{unit="msat"} 270`)
	assert.Contains(t, mm, `scrip_mint_calls_total{op="withdraw_finish",outcome="ok"} 2`)
	assert.Contains(t, mm, `scrip_mint_deposit_coins_total{status="credited"}`)
	rep, err := admin.Audit(ctx)
	require.NoError(t, err)
	assert.False(t, rep.Overspent)

	// A restart of s1 keeps its shares, its spent set and its schedules.
	sched1, _, err := s1.Prices().Current(time.Now())
	require.NoError(t, err)
	pubs := client.wallet.pubs
	require.NoError(t, s1.Close())
	s1 = roleServer(t, dir1, mint.Announcement(), nil)
	client.connect(t, s1)
	_, ok := s1.Prices().Lookup(sched1.ID())
	assert.True(t, ok, "a schedule published before the restart is honoured")
	infos, err := sc.CoinStatus(ctx, s1.Host().ID(), pubs)
	require.NoError(t, err)
	deposited := 0
	for _, in := range infos {
		if in.State == pb.CoinState_COIN_DEPOSITED {
			deposited++
		}
	}
	assert.NotZero(t, deposited, "coins paid to s1 are still known as deposited")
	back, err := sc.Read(ctx, s1.Host().ID(), &pb.Read{StorageIndex: si[:], ShareNumber: 3, Length: uint64(len(data))})
	require.NoError(t, err)
	assert.Equal(t, data, back)
	assert.Eventually(t, func() bool { return roleBalance(t, s1, DefaultUnit) == client.wallet.spent(s1.Host().ID()) },
		10*time.Second, 50*time.Millisecond)

	client.host.Close()
	require.NoError(t, s1.Close())
	require.NoError(t, s2.Close())
	require.NoError(t, mint.Close())
	checkLeaks()
}

// TestServerBearerCap: over its bearer cap a server deposits a call's
// bearer coins before serving it (so the mint has them credited at once),
// or, set to refuse, answers RATE_LIMITED; designated coins are taken
// either way.
func TestServerBearerCap(t *testing.T) {
	checkLeaks := roleLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mintDir, dir1, dir2 := roleDirs(t)
	mint := roleMint(t, mintDir)
	defer mint.Close()
	voucher, err := roleAdmin(t, mintDir).NewVoucher(ctx, "", 1000)
	require.NoError(t, err)
	slow := func(c *ServerConfig) { c.BearerCap = 8; c.DepositInterval = time.Hour }
	first := roleServer(t, dir1, mint.Announcement(), slow)
	defer first.Close()
	refusing := roleServer(t, dir2, mint.Announcement(), func(c *ServerConfig) { slow(c); c.RefuseOverCap = true })
	defer refusing.Close()

	client := newRoleClient(t, mint)
	defer client.host.Close()
	client.connect(t, first)
	client.connect(t, refusing)
	ks := client.issuing(t)
	client.withdraw(t, ks, voucher, "", roleChange(2)...)
	sc := client.storage()
	var si [protocol.StorageIndexSize]byte

	// Deposit before serving: the balance is there without a deposit round.
	_, err = sc.List(ctx, first.Host().ID(), &pb.List{StorageIndex: si[:]})
	require.NoError(t, err)
	paid := client.wallet.spent(first.Host().ID())
	assert.Greater(t, paid, uint64(8))
	assert.Equal(t, paid, roleBalance(t, first, DefaultUnit))

	// Refused over the cap; designated coins are fine.
	_, err = sc.List(ctx, refusing.Host().ID(), &pb.List{StorageIndex: si[:]})
	require.ErrorIs(t, err, protocol.ErrRateLimited)
	assert.Equal(t, protocol.OutcomeRefused, protocol.OutcomeOf(err))
	client.withdraw(t, ks, voucher, refusing.Host().ID(), roleChange(2)...)
	_, err = sc.List(ctx, refusing.Host().ID(), &pb.List{StorageIndex: si[:]})
	require.NoError(t, err)

	client.host.Close()
	require.NoError(t, first.Close())
	require.NoError(t, refusing.Close())
	require.NoError(t, mint.Close())
	checkLeaks()
}

// TestServerPrices: the server publishes a new schedule every period and
// honours the earlier ones until they expire; and it refuses the coins of
// a keyset the mint revoked once it has refreshed the keysets.
func TestServerPrices(t *testing.T) {
	checkLeaks := roleLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mintDir, dir1, _ := roleDirs(t)
	mint := roleMint(t, mintDir)
	defer mint.Close()
	admin := roleAdmin(t, mintDir)
	voucher, err := admin.NewVoucher(ctx, "", 1000)
	require.NoError(t, err)
	s := roleServer(t, dir1, mint.Announcement(), func(c *ServerConfig) {
		c.SchedulePeriod = 50 * time.Millisecond
		c.ScheduleValidity = time.Minute
	})
	defer s.Close()

	client := newRoleClient(t, mint)
	defer client.host.Close()
	client.connect(t, s)
	ks := client.issuing(t)
	client.withdraw(t, ks, voucher, "", roleChange(4)...)

	old, _, err := s.Prices().Current(time.Now())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		cur, _, err := s.Prices().Current(time.Now())
		return err == nil && cur.ID() != old.ID()
	}, 5*time.Second, 10*time.Millisecond, "no new schedule")
	pc := protocol.NewPaidClient(client.host, client.wallet, protocol.WithPaymentRounds(0))
	pc.SetSchedule(old)
	var si [protocol.StorageIndexSize]byte
	_, err = protocol.NewStorageClient(pc).List(ctx, s.Host().ID(), &pb.List{StorageIndex: si[:]})
	require.NoError(t, err, "paying under an earlier schedule that is still valid")
	assert.Equal(t, old.Rates.PerCall, client.wallet.spent(s.Host().ID()))

	// Revocation.
	require.NoError(t, admin.RevokeKeyset(ctx, ks.ID()))
	require.NoError(t, s.RefreshKeysets(ctx))
	_, err = client.storage().List(ctx, s.Host().ID(), &pb.List{StorageIndex: si[:]})
	require.ErrorIs(t, err, protocol.ErrRevokedKeyset)
	err = admin.RevokeKeyset(ctx, [32]byte{1})
	require.ErrorIs(t, err, protocol.ErrNotFound)
	kss, err := admin.Keysets(ctx)
	require.NoError(t, err)
	require.Len(t, kss, 2, "a new keyset replaces the revoked one")
	assert.True(t, kss[0].Revoked != kss[1].Revoked)

	client.host.Close()
	require.NoError(t, s.Close())
	require.NoError(t, mint.Close())
	checkLeaks()
}

// TestServerMintUnreachable: a server whose mint does not answer does not
// start, and says so.
func TestServerMintUnreachable(t *testing.T) {
	mintDir, dir1, _ := roleDirs(t)
	mint := roleMint(t, mintDir)
	ann := mint.Announcement()
	require.NoError(t, mint.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := NewServer(ctx, ServerConfig{Dir: dir1, Capacity: 1 << 20, Mint: ann, Logger: roleLog(t)})
	require.ErrorIs(t, err, ErrUnreachable)
	assert.NotContains(t, err.Error(), "\n\n")
}

// TestMintAdmin: the admin endpoint listens on loopback only unless
// allowed, wants its token, and its client says when it cannot reach it.
func TestMintAdmin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:7390", "example.com:80"} {
		_, err := NewMint(ctx, MintConfig{Dir: t.TempDir(), AdminAddr: addr, Logger: roleLog(t)})
		assert.ErrorIs(t, err, ErrNotLoopback, addr)
	}
	m, err := NewMint(ctx, MintConfig{Dir: t.TempDir(), AdminAddr: "0.0.0.0:0", AllowRemoteAdmin: true, Logger: roleLog(t)})
	require.NoError(t, err)
	require.NoError(t, m.Close())

	dir := t.TempDir()
	m = roleMint(t, dir)
	defer m.Close()
	url := m.AdminURL()
	require.True(t, strings.HasPrefix(url, "http://127.0.0.1:"), url)
	_, err = NewAdminClient(url, "wrong").NewVoucher(ctx, "", 10)
	require.ErrorIs(t, err, ErrAdminUnauthorized)
	admin := roleAdmin(t, dir)
	_, err = admin.NewVoucher(ctx, "", 0)
	require.Error(t, err)
	_, err = admin.NewVoucher(ctx, "other", 10)
	require.Error(t, err)
	_, err = admin.Voucher(ctx, "nosuchvouchercodeatallanywhere12")
	require.ErrorIs(t, err, protocol.ErrNotFound)
	ks, err := admin.RotateKeyset(ctx)
	require.NoError(t, err)
	assert.Equal(t, DefaultUnit, ks.Unit)
	assert.Contains(t, roleGetToken(t, url+"/metrics", m.AdminToken()), `scrip_mint_keysets{state="issuing"} 2`)

	// The token survives a restart.
	token := m.AdminToken()
	require.NoError(t, m.Close())
	_, err = admin.NewVoucher(ctx, "", 10)
	require.ErrorIs(t, err, ErrAdminUnreachable)
	m = roleMint(t, dir)
	defer m.Close()
	assert.Equal(t, token, m.AdminToken())
	_, err = NewAdminClient(m.AdminURL(), token).NewVoucher(ctx, "", 10)
	require.NoError(t, err)
}

// TestServerMintMoves: a mint restarted on other ports rewrites its
// announcement; a server that lost it finds it there and deposits the
// coins it took meanwhile.
func TestServerMintMoves(t *testing.T) {
	checkLeaks := roleLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mintDir, dir1, _ := roleDirs(t)
	annFile := filepath.Join(t.TempDir(), "grid.json")
	mint := roleMint(t, mintDir)
	defer func() { mint.Close() }()
	require.NoError(t, WriteAnnouncement(annFile, mint.Announcement()))
	voucher, err := roleAdmin(t, mintDir).NewVoucher(ctx, "", 1000)
	require.NoError(t, err)
	s := roleServer(t, dir1, mint.Announcement(), func(c *ServerConfig) { c.AnnouncementsFile = annFile })
	defer s.Close()
	client := newRoleClient(t, mint)
	defer client.host.Close()
	client.connect(t, s)
	client.withdraw(t, client.issuing(t), voucher, "", roleChange(3)...)

	oldAddrs := mint.Announcement().Addrs
	require.NoError(t, mint.Close())
	mint = roleMint(t, mintDir)
	require.NotEqual(t, oldAddrs, mint.Announcement().Addrs)
	require.NoError(t, WriteAnnouncement(annFile, mint.Announcement()))

	var si [protocol.StorageIndexSize]byte
	_, err = client.storage().List(ctx, s.Host().ID(), &pb.List{StorageIndex: si[:]})
	require.NoError(t, err)
	paid := client.wallet.spent(s.Host().ID())
	require.Eventually(t, func() bool { return roleBalance(t, s, DefaultUnit) == paid }, 10*time.Second, 50*time.Millisecond)

	client.host.Close()
	require.NoError(t, s.Close())
	require.NoError(t, mint.Close())
	checkLeaks()
}

// TestServerAgentProgram: a pricing program that cannot run leaves the
// default agent to price, and the server starts all the same.
func TestServerAgentProgram(t *testing.T) {
	checkLeaks := roleLeakCheck(t)
	mintDir, dir1, _ := roleDirs(t)
	mint := roleMint(t, mintDir)
	defer mint.Close()
	s := roleServer(t, dir1, mint.Announcement(), func(c *ServerConfig) {
		c.AgentProgram = []string{filepath.Join(t.TempDir(), "no-such-agent")}
	})
	cur, _, err := s.Prices().Current(time.Now())
	require.NoError(t, err)
	assert.NotZero(t, cur.Rates.StorePerGiBMonth)
	require.NoError(t, s.Close())
	require.NoError(t, mint.Close())
	checkLeaks()
}
