package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/spentset"
	"github.com/scripnet/scrip/node/wallet"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// mintDropper stands in front of a mint's service: when armed, it lets
// the next Deposit commit and then drops the caller's connection before
// the answer leaves, as a mint killed right after its commit would.
type mintDropper struct {
	armed   atomic.Bool
	dropped chan []pb.DepositStatus // the verdicts never sent
}

// dropAfterDeposit puts a mintDropper in front of m's service.
func dropAfterDeposit(m *Mint) *mintDropper {
	d := &mintDropper{dropped: make(chan []pb.DepositStatus, 1)}
	handle := m.service.Handle
	m.host.SetStreamHandler(libp2pprotocol.ID(protocol.MintID), protocol.NewStreamHandler(protocol.MintID,
		func(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
			resp, err := handle(ctx, remote, req)
			var mr pb.MintRequest
			if err != nil || proto.Unmarshal(req.Body, &mr) != nil || mr.GetDeposit() == nil || !d.armed.CompareAndSwap(true, false) {
				return resp, err
			}
			var out pb.MintResponse
			var verdicts []pb.DepositStatus
			if proto.Unmarshal(resp.GetBody(), &out) == nil {
				for _, r := range out.GetDeposit().GetResults() {
					verdicts = append(verdicts, r.GetStatus())
				}
			}
			d.dropped <- verdicts
			m.host.Network().ClosePeer(remote)
			return nil, errors.New("the mint dies after its commit")
		}, protocol.WithBaseContext(m.ctx)))
	return d
}

// depositClient starts a client node for the mint and the servers, each
// file in one share (k = happy = n = 1), with pools off, housekeeping
// only when a test calls it, and funds it with a voucher worth funded.
func depositClient(t *testing.T, ctx context.Context, m *Mint, s *Server, funded uint64, edit func(*ClientConfig)) *Client {
	t.Helper()
	ann := filepath.Join(t.TempDir(), "grid.json")
	require.NoError(t, WriteAnnouncement(ann, m.Announcement()))
	require.NoError(t, WriteAnnouncement(ann, s.Announcement()))
	cfg := ClientConfig{
		Dir: t.TempDir(), Announce: ann, NoAPI: true,
		K: 1, Happy: 1, N: 1,
		Tick: time.Hour, ConnectTimeout: 3 * time.Second, PoolServers: -1,
		Logger: roleLog(t),
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := NewClient(ctx, cfg)
	require.NoError(t, err)
	n, err := c.WaitConnected(ctx, 1)
	require.NoError(t, err, "%d servers connected", n)
	voucher, err := m.CreateVoucher(ctx, "", funded)
	require.NoError(t, err)
	res, err := c.Fund(ctx, voucher, 0)
	require.NoError(t, err)
	require.Equal(t, funded, res.Withdrawn)
	return c
}

// sold returns the bytes the server allocated for paid calls in this
// pricing period: each Allocate served counts its shares again.
func (s *Server) sold() uint64 {
	s.sales.mu.Lock()
	defer s.sales.mu.Unlock()
	return s.sales.current
}

// walletHeld returns the value the client's wallet still holds, in any
// state but spent.
func walletHeld(t *testing.T, ctx context.Context, c *Client) wallet.Balance {
	t.Helper()
	b, err := c.Wallet().Balance(ctx)
	require.NoError(t, err)
	return b
}

// answered checks that the server recorded the coins the client spent
// for exactly one request, and stored that request's answer.
func answered(t *testing.T, ctx context.Context, c *Client, s *Server) {
	t.Helper()
	coins, err := c.Wallet().Coins(ctx)
	require.NoError(t, err)
	var pubs [][32]byte
	for _, ci := range coins {
		if ci.State == wallet.Spent && string(ci.Server) == string(s.Host().ID()) {
			pubs = append(pubs, ci.Coin.Pub)
		}
	}
	require.NotEmpty(t, pubs)
	infos, err := s.Spent().Coins(ctx, pubs)
	require.NoError(t, err)
	ids := make(map[[16]byte]bool)
	for _, in := range infos {
		require.NotEqual(t, spentset.CoinUnknown, in.State, "a coin the wallet spent is recorded")
		ids[in.RequestID] = true
	}
	require.Len(t, ids, 1, "the coins paid for one request")
	for id := range ids {
		rec, err := s.Spent().Lookup(ctx, id)
		require.NoError(t, err)
		assert.True(t, rec.Answered, "the request's answer is stored")
	}
}

// TestServerDepositUnknownOutcome: a server over its bearer cap deposits
// a call's bearer coins before serving it, and the mint commits the
// deposit but dies before answering. The server records the coins as
// credit for the request and answers INTERNAL (not RATE_LIMITED, which
// would tell the client that its coins are free); the client node sends
// the same request again; the server has the mint confirm the coins
// (already credited) and serves it. The upload is served once and paid
// once, the mint credits the server what the client paid, and the
// wallet's value and the server's credit add up to what was withdrawn.
func TestServerDepositUnknownOutcome(t *testing.T) {
	checkLeaks := roleLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mintDir, dir1, _ := roleDirs(t)
	m := roleMint(t, mintDir)
	defer m.Close()
	drop := dropAfterDeposit(m)
	s := roleServer(t, dir1, m.Announcement(), func(c *ServerConfig) { c.BearerCap = 1; c.DepositInterval = time.Hour })
	defer s.Close()
	const funded = 20_000
	c := depositClient(t, ctx, m, s, funded, func(c *ClientConfig) { c.RetryBackoff = 20 * time.Millisecond })
	defer c.Close()

	drop.armed.Store(true)
	data := make([]byte, 3000)
	rand.Read(data)
	capab, rep, err := c.Put(ctx, bytes.NewReader(data))
	require.NoError(t, err)
	select {
	case verdicts := <-drop.dropped:
		require.NotEmpty(t, verdicts)
		for _, v := range verdicts {
			require.Equal(t, pb.DepositStatus_DEPOSIT_CREDITED, v, "the mint committed the deposit it did not answer")
		}
	default:
		t.Fatal("no deposit was dropped: the server did not deposit before serving")
	}
	paid := rep.Total
	require.Greater(t, paid, uint64(1), "the call's bearer coins are over the cap")
	require.Zero(t, rep.Unknown, "the retry was answered")

	// Served once: the first attempt answered INTERNAL, the retry OK, one
	// allocation sold; paid once: one request recorded, its answer stored.
	metrics := roleGet(t, s.MetricsURL()+"/metrics")
	assert.Contains(t, metrics, `scrip_server_calls_total{op="allocate",outcome="internal"} 1`)
	assert.Contains(t, metrics, `scrip_server_calls_total{op="allocate",outcome="ok"} 1`)
	assert.Contains(t, metrics, `scrip_server_deposit_coins_total{status="already_credited"}`)
	assert.Equal(t, rep.ShareSize, s.sold(), "the allocation was served once")
	st, err := s.Spent().Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), st.Requests)
	assert.Equal(t, paid, st.CreditedValue, "the mint's verdicts are recorded")
	assert.Zero(t, st.Pending)
	assert.Zero(t, s.policy.Held())
	answered(t, ctx, c, s)

	// Value: the mint credits the server what the client paid, and the
	// wallet holds the rest.
	assert.Equal(t, paid, roleBalance(t, s, DefaultUnit))
	b := walletHeld(t, ctx, c)
	assert.Zero(t, b.Reserved, "no coin left waiting for an answer")
	assert.Equal(t, uint64(funded), b.Unspent+b.Bound+b.Reserved+roleBalance(t, s, DefaultUnit),
		"wallet + server credit = withdrawn")

	// The file reads back.
	var out bytes.Buffer
	_, err = c.Get(ctx, capab, &out)
	require.NoError(t, err)
	assert.Equal(t, data, out.Bytes())

	require.NoError(t, c.Close())
	require.NoError(t, s.Close())
	require.NoError(t, m.Close())
	checkLeaks()
}

// TestServerDepositPartialCredit: over the cap, a call pays with a bearer
// coin another server deposited first and a fresh one. The mint credits
// the fresh coin and refuses the other: the server records only the
// fresh coin, as credit for the request, and answers INTERNAL, saying
// so; the client's retry of the same request is served if the credited
// coin pays for it, and otherwise answered INTERNAL again, the coin
// staying the server's.
func TestServerDepositPartialCredit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mintDir, dir1, dir2 := roleDirs(t)
	m := roleMint(t, mintDir)
	defer m.Close()
	voucher, err := m.CreateVoucher(ctx, "", 100_000)
	require.NoError(t, err)
	slow := func(c *ServerConfig) { c.BearerCap = 1; c.DepositInterval = time.Hour }
	first := roleServer(t, dir1, m.Announcement(), slow)
	defer first.Close()
	second := roleServer(t, dir2, m.Announcement(), slow)
	defer second.Close()
	client := newRoleClient(t, m)
	defer client.host.Close()
	client.connect(t, first)
	client.connect(t, second)
	ks := client.issuing(t)
	var si [protocol.StorageIndexSize]byte
	list := &pb.List{StorageIndex: si[:]}
	// price returns a server's schedule and the price of a List under it
	// rounded up to a coin: a call may pay more than its price.
	price := func(s *Server) (*protocol.SignedSchedule, uint64) {
		cur, _, err := s.Prices().Current(time.Now())
		require.NoError(t, err)
		q, err := protocol.Quote(cur.Rates, protocol.Usage{})
		require.NoError(t, err)
		require.Greater(t, q, uint64(1), "a List costs more than the cap")
		coin := uint64(1)
		for coin < q {
			coin <<= 1
		}
		return cur, coin
	}
	paidClient := func(s *Server, p protocol.Payer, opts ...protocol.ClientOption) *protocol.StorageClient {
		sched, _ := price(s)
		pc := protocol.NewPaidClient(client.host, p, opts...)
		pc.SetSchedule(sched)
		return protocol.NewStorageClient(pc)
	}

	// The first server takes coin x, deposited before serving.
	_, ax := price(first)
	x := client.withdraw(t, ks, voucher, "", ax)[0]
	_, err = paidClient(first, &fixedPayer{w: client.wallet, coins: []*coin.Coin{x}}).List(ctx, first.Host().ID(), list)
	require.NoError(t, err)
	require.Equal(t, x.Amount, roleBalance(t, first, DefaultUnit))

	for _, covers := range []bool{true, false} {
		// x again, with a fresh coin y: worth the price, or less.
		_, amount := price(second)
		if !covers {
			amount = 1
		}
		y := client.withdraw(t, ks, voucher, "", amount)[0]
		payer := &fixedPayer{w: client.wallet, coins: []*coin.Coin{x, y}}
		before := roleBalance(t, second, DefaultUnit)
		_, err = paidClient(second, payer, protocol.WithRetries(1), protocol.WithRetryBackoff(time.Millisecond)).
			List(ctx, second.Host().ID(), list)
		if covers {
			require.NoError(t, err, "the retry is served on the credited coin")
			assert.Equal(t, []protocol.Outcome{protocol.OutcomeSpent}, payer.outcomes)
		} else {
			require.ErrorIs(t, err, protocol.ErrInternal)
			assert.Contains(t, err.Error(), "costs more than the 1 recorded")
			assert.Equal(t, []protocol.Outcome{protocol.OutcomeUnknown}, payer.outcomes)
		}
		assert.Equal(t, 1, payer.pays, "the retry sent the same request: paid once")
		// The mint credited y to the second server, and x stays the first's.
		assert.Equal(t, before+y.Amount, roleBalance(t, second, DefaultUnit))
		assert.Equal(t, x.Amount, roleBalance(t, first, DefaultUnit))
		infos, err := second.Spent().Coins(ctx, [][32]byte{x.Pub, y.Pub})
		require.NoError(t, err)
		assert.Equal(t, spentset.CoinUnknown, infos[0].State, "the refused coin is not recorded")
		assert.NotEqual(t, spentset.CoinUnknown, infos[1].State, "the credited coin is recorded")
	}
}

// fixedPayer pays every call with the same coins, whatever the amount,
// and counts the payments and outcomes.
type fixedPayer struct {
	w     *roleWallet
	coins []*coin.Coin

	mu       sync.Mutex
	pays     int
	outcomes []protocol.Outcome
}

func (p *fixedPayer) Pay(ctx context.Context, server peer.ID, requestID []byte, unit string, amount uint64, digest [protocol.DigestSize]byte) ([]*coin.Spend, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pays++
	var out []*coin.Spend
	for _, c := range p.coins {
		p.w.mu.Lock()
		key := p.w.keys[c.Pub]
		p.w.mu.Unlock()
		s, err := coin.NewSpend(c, key, []byte(server), digest)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (p *fixedPayer) Settle(ctx context.Context, server peer.ID, requestID []byte, spends []*coin.Spend, outcome protocol.Outcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outcomes = append(p.outcomes, outcome)
}

// stallBackend is a server's share store whose next Allocate, armed,
// signals that it was reached (the call's coins are recorded by then)
// and waits until the server stops.
type stallBackend struct {
	protocol.StorageBackend
	armed   atomic.Bool
	reached chan struct{}
}

func (b *stallBackend) Allocate(ctx context.Context, a *protocol.Allocation) (*protocol.Allocated, error) {
	if b.armed.CompareAndSwap(true, false) {
		close(b.reached)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return b.StorageBackend.Allocate(ctx, a)
}

// freeTCPAddr returns a libp2p TCP address on 127.0.0.1 whose port was
// free a moment ago.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port)
}

// TestServerRestartServesRetry: a server stops in the middle of a paid
// call, after recording its coins and before serving it; started again
// on the same directory, identity and port, it serves the client's retry
// of the same request on the credit of those coins. The upload finishes,
// the server records one request and sells one allocation, the mint
// credits it what the client paid, once, and the wallet's value and the
// server's credit add up to what was withdrawn.
func TestServerRestartServesRetry(t *testing.T) {
	checkLeaks := roleLeakCheck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mintDir, dir1, _ := roleDirs(t)
	m := roleMint(t, mintDir)
	defer m.Close()
	listen := freeTCPAddr(t)
	fixed := func(c *ServerConfig) { c.ListenAddrs = []string{listen} }
	s := roleServer(t, dir1, m.Announcement(), fixed)
	defer func() { s.Close() }()
	const funded = 20_000
	// Retries enough for a server restarted in-process (well under a
	// second) to be found: about 25 s in all.
	c := depositClient(t, ctx, m, s, funded, func(c *ClientConfig) { c.Retries = 9; c.RetryBackoff = 50 * time.Millisecond })
	defer c.Close()

	// The server's next Allocate stalls once its coins are recorded.
	stall := &stallBackend{StorageBackend: salesBackend{Backend: s.shares.Backend(), sales: s.sales}, reached: make(chan struct{})}
	stall.armed.Store(true)
	s.host.SetStreamHandler(libp2pprotocol.ID(protocol.StorageID), protocol.NewStreamHandler(protocol.StorageID,
		protocol.NewStorageServer(stall, s.paywall).Handler(), protocol.WithBaseContext(s.ctx)))

	data := make([]byte, 3000)
	rand.Read(data)
	type putResult struct {
		capab string
		rep   *PutReport
		err   error
	}
	done := make(chan putResult, 1)
	go func() {
		capab, rep, err := c.Put(ctx, bytes.NewReader(data))
		done <- putResult{capab, rep, err}
	}()
	select {
	case <-stall.reached:
	case r := <-done:
		t.Fatalf("the upload ended before the server stalled: %v", r.err)
	}
	st, err := s.Spent().Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), st.Requests, "the call's coins are recorded")
	recorded := st.PendingValue + st.CreditedValue
	require.NotZero(t, recorded)
	require.NoError(t, s.Close())

	// The same server again: same directory, identity and address.
	id := s.Host().ID()
	s = roleServer(t, dir1, m.Announcement(), fixed)
	require.Equal(t, id, s.Host().ID())
	r := <-done
	require.NoError(t, r.err, "the retry is served by the restarted server")
	require.Zero(t, r.rep.Unknown)
	require.Equal(t, recorded, r.rep.Total, "the client paid once, what the server recorded")

	st, err = s.Spent().Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), st.Requests, "no second payment")
	assert.Equal(t, r.rep.ShareSize, s.sold(), "the allocation was served once, after the restart")
	answered(t, ctx, c, s)
	require.Eventually(t, func() bool { return roleBalance(t, s, DefaultUnit) == recorded },
		10*time.Second, 20*time.Millisecond, "the mint credits the recorded coins")
	b := walletHeld(t, ctx, c)
	assert.Zero(t, b.Reserved)
	assert.Equal(t, uint64(funded), b.Unspent+b.Bound+roleBalance(t, s, DefaultUnit), "wallet + server credit = withdrawn")

	var out bytes.Buffer
	_, err = c.Get(ctx, r.capab, &out)
	require.NoError(t, err)
	assert.Equal(t, data, out.Bytes())

	require.NoError(t, c.Close())
	require.NoError(t, s.Close())
	require.NoError(t, m.Close())
	checkLeaks()
}

// TestServerDepositMintUnreachable: over its bearer cap, a server that
// cannot reach its mint never had its deposit seen: it refuses the call
// with RATE_LIMITED, nothing recorded, and the client keeps its coins.
func TestServerDepositMintUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mintDir, dir1, _ := roleDirs(t)
	m := roleMint(t, mintDir)
	defer m.Close()
	voucher, err := m.CreateVoucher(ctx, "", 1000)
	require.NoError(t, err)
	s := roleServer(t, dir1, m.Announcement(), func(c *ServerConfig) { c.BearerCap = 1; c.DepositInterval = time.Hour })
	defer s.Close()
	client := newRoleClient(t, m)
	defer client.host.Close()
	client.connect(t, s)
	client.withdraw(t, client.issuing(t), voucher, "", roleChange(2)...)
	mintID, mintAddrs := m.Host().ID(), m.Host().Addrs()
	require.NoError(t, m.Close())
	// The server dials the mint's TCP address only, which refuses at once
	// (a QUIC dial would wait for its timeout).
	ps := s.Host().Peerstore()
	ps.ClearAddrs(mintID)
	ps.AddAddrs(mintID, slices.DeleteFunc(mintAddrs, func(a ma.Multiaddr) bool { return !strings.Contains(a.String(), "/tcp/") }), time.Hour)
	require.Eventually(t, func() bool { return s.Host().Network().Connectedness(mintID) != network.Connected },
		5*time.Second, 5*time.Millisecond, "the server sees the mint gone")

	var si [protocol.StorageIndexSize]byte
	_, err = client.storage().List(ctx, s.Host().ID(), &pb.List{StorageIndex: si[:]})
	require.ErrorIs(t, err, protocol.ErrRateLimited)
	assert.Equal(t, protocol.OutcomeRefused, protocol.OutcomeOf(err))
	st, err := s.Spent().Stats(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.Requests, "nothing recorded")
	assert.Zero(t, s.policy.Held())
	assert.Zero(t, client.wallet.spent(s.Host().ID()), "the coins came back to the wallet")
}
