package protocol

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// unsettledPolicy is a DepositPolicy whose deposits before serving are
// never settled: the mint, it says, did not answer, or refused the coins
// in refused. It is also a CreditPolicy that refuses to serve on credit
// while credit holds an error.
type unsettledPolicy struct {
	mu      sync.Mutex
	refused [][32]byte
	credit  error
	admits  int
	credits int
}

var (
	_ DepositPolicy = (*unsettledPolicy)(nil)
	_ CreditPolicy  = (*unsettledPolicy)(nil)
)

func (p *unsettledPolicy) AdmitBearer(ctx context.Context, digest [DigestSize]byte, spends []*coin.Spend) (func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.admits++
	return nil, &DepositUnsettledError{Refused: p.refused, Reason: "no verdict from the mint on your coins; retry this request"}
}

func (p *unsettledPolicy) AdmitCredit(ctx context.Context, rec *SpentRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.credits++
	return p.credit
}

func (p *unsettledPolicy) set(refused [][32]byte, credit error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refused, p.credit = refused, credit
}

func (p *unsettledPolicy) counts() (admits, credits int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.admits, p.credits
}

// TestPaywallDepositUnsettled: when the deposit of a call's bearer coins
// before serving is unsettled, the paywall records the coins the mint may
// hold as credit for the request and answers INTERNAL (outcome unknown);
// a retry of the same request is served on that credit without a second
// deposit, once the credit policy agrees; coins the mint refused are not
// recorded, and a retry is served only if the others pay for the call.
func TestPaywallDepositUnsettled(t *testing.T) {
	m := mint(t)
	policy := new(unsettledPolicy)
	srv := newTestServer(t, serverConfig{addr: transports[0].addr, paywall: []PaywallOption{WithDepositPolicy(policy)}})
	si := srv.share(t, 8192, 'u')
	client := newClientHost(t, srv.host)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := func(req *pb.Request) ([]byte, error) {
		resp, err := Call(ctx, client, srv.host.ID(), StorageID, req)
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	}
	price := mustQuote(t, testRates, Usage{ReadBytes: 4096}) // 8
	wantUnknown := func(err error, msg string) {
		t.Helper()
		e := wantErr(t, err, ErrInternal)
		if OutcomeOf(err) != OutcomeUnknown || !strings.Contains(e.Message, msg) {
			t.Fatalf("got %v, want INTERNAL saying %q", err, msg)
		}
	}

	// The mint's verdict is unknown: every coin recorded, INTERNAL.
	paying, _ := pick(t, m.good.purse(t, 4, 1, [32]byte{}), price)
	req, _ := rawPaid{op: readOp(si, 4096), sched: srv.sched, coins: paying, signFor: srv.host.ID()}.request(t)
	_, err := call(req)
	wantUnknown(err, "no verdict from the mint")
	if srv.spent.Requests() != 1 || srv.spent.Coins() != len(paying) {
		t.Fatalf("%d requests, %d coins recorded; want 1 and %d", srv.spent.Requests(), srv.spent.Coins(), len(paying))
	}
	// The retry waits for the credit policy, which still says no.
	policy.set(nil, &Error{Code: pb.Code_INTERNAL, Message: "the mint has not confirmed these coins"})
	_, err = call(req)
	wantUnknown(err, "the mint has not confirmed these coins")
	// And then it is served, on the credit of the recorded coins: no
	// second deposit, nothing more recorded.
	policy.set(nil, nil)
	body, err := call(req)
	if err != nil {
		t.Fatalf("retry on credit: %v", err)
	}
	out := new(pb.StorageResponse)
	if proto.Unmarshal(body, out) != nil || !bytes.Equal(out.GetRead().GetData(), bytes.Repeat([]byte{'u'}, 4096)) {
		t.Fatal("the retry did not read the share")
	}
	if admits, credits := policy.counts(); admits != 1 || credits != 2 {
		t.Fatalf("%d deposits, %d credit checks; want 1 and 2", admits, credits)
	}
	if srv.spent.Requests() != 1 || srv.spent.Coins() != len(paying) {
		t.Fatalf("%d requests, %d coins recorded after the retry", srv.spent.Requests(), srv.spent.Coins())
	}

	// Partial credit: the mint refused one coin. The others are recorded;
	// they pay for the call (8 of the 12 paid), so a retry is served.
	eight := m.good.withdraw(t, 1, 8, [32]byte{})
	four := m.good.withdraw(t, 1, 4, [32]byte{})
	policy.set([][32]byte{four[0].c.Pub}, nil)
	req, _ = rawPaid{op: readOp(si, 4096), sched: srv.sched, coins: append(eight, four...), signFor: srv.host.ID()}.request(t)
	_, err = call(req)
	wantUnknown(err, "no verdict")
	if srv.spent.Requests() != 2 || srv.spent.Coins() != len(paying)+1 {
		t.Fatalf("%d requests, %d coins recorded; the refused coin must not be", srv.spent.Requests(), srv.spent.Coins())
	}
	if _, err := call(req); err != nil {
		t.Fatalf("retry on the credit of the coins the mint took: %v", err)
	}
	// The mint refused the larger coin: the 4 recorded do not pay for the
	// call, and a retry is answered INTERNAL, the 4 staying credit.
	eight = m.good.withdraw(t, 1, 8, [32]byte{})
	four = m.good.withdraw(t, 1, 4, [32]byte{})
	policy.set([][32]byte{eight[0].c.Pub}, nil)
	req, _ = rawPaid{op: readOp(si, 4096), sched: srv.sched, coins: append(eight, four...), signFor: srv.host.ID()}.request(t)
	_, err = call(req)
	wantUnknown(err, "no verdict")
	_, err = call(req)
	wantUnknown(err, "costs more than the 4 recorded")
	if srv.spent.Requests() != 3 || srv.spent.Coins() != len(paying)+2 {
		t.Fatalf("%d requests, %d coins recorded", srv.spent.Requests(), srv.spent.Coins())
	}
}

// TestPaidClientRetriesUnknown: a paid request answered INTERNAL is sent
// again, the same bytes to the same server, a bounded number of times
// with a growing wait, and the payer hears the outcome once; a free
// request answered INTERNAL, or a paid one refused, is not sent again.
func TestPaidClientRetriesUnknown(t *testing.T) {
	m := mint(t)
	var (
		mu       sync.Mutex
		seen     [][]byte
		failures atomic.Int32 // INTERNAL answers left to give
		refuse   atomic.Bool
	)
	srv := newTestServer(t, serverConfig{addr: transports[0].addr, wrap: func(h Handler) Handler {
		return func(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
			b, _ := proto.Marshal(req)
			mu.Lock()
			seen = append(seen, b)
			mu.Unlock()
			if refuse.Load() {
				return nil, &Error{Code: pb.Code_RATE_LIMITED, Message: "not now"}
			}
			if failures.Add(-1) >= 0 {
				return nil, &Error{Code: pb.Code_INTERNAL, Message: "outcome unknown"}
			}
			return h(ctx, remote, req)
		}
	}})
	si := srv.share(t, 4096, 'r')
	client := newClientHost(t, srv.host)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	attempts := func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		seen = nil
		return out
	}
	allSame := func(reqs [][]byte) bool {
		for _, r := range reqs[1:] {
			if !bytes.Equal(r, reqs[0]) {
				return false
			}
		}
		return true
	}

	const retries = 3
	wallet := newTestWallet(m.good.purse(t, 4, 2, srv.designation()))
	pc := NewPaidClient(client, wallet, WithRetries(retries), WithRetryBackoff(5*time.Millisecond))
	pc.SetSchedule(srv.sched)
	sc := NewStorageClient(pc)
	read := &pb.Read{StorageIndex: si[:], Length: 4096}

	// Two INTERNAL answers, then the answer: three attempts, identical.
	failures.Store(2)
	if _, err := sc.Read(ctx, srv.host.ID(), read); err != nil {
		t.Fatalf("read after two INTERNAL answers: %v", err)
	}
	if got := attempts(); len(got) != 3 || !allSame(got) {
		t.Fatalf("%d attempts (identical: %v), want 3 identical", len(got), allSame(got))
	}
	if wallet.count(OutcomeSpent) != 1 || wallet.count(OutcomeUnknown) != 0 {
		t.Fatalf("outcomes %v, want one spent", wallet.outcomes)
	}
	if srv.spent.Requests() != 1 {
		t.Fatalf("%d requests recorded, want 1", srv.spent.Requests())
	}

	// INTERNAL every time: 1 + retries attempts, then the payer hears
	// "unknown" once (the coins stay with the server).
	failures.Store(1 << 20)
	start := time.Now()
	_, err := sc.Read(ctx, srv.host.ID(), read)
	if !errors.Is(err, ErrInternal) {
		t.Fatalf("got %v, want INTERNAL", err)
	}
	if got := attempts(); len(got) != 1+retries || !allSame(got) {
		t.Fatalf("%d attempts, want %d identical", len(got), 1+retries)
	}
	if took := time.Since(start); took < (1<<retries-1)*5*time.Millisecond {
		t.Fatalf("the retries took %v: no backoff", took)
	}
	if wallet.count(OutcomeUnknown) != 1 || wallet.count(OutcomeSpent) != 1 {
		t.Fatalf("outcomes %v, want one spent and one unknown", wallet.outcomes)
	}

	// A refusal is final: one attempt.
	failures.Store(0)
	refuse.Store(true)
	if _, err := sc.Read(ctx, srv.host.ID(), read); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("got %v", err)
	}
	if got := attempts(); len(got) != 1 {
		t.Fatalf("%d attempts of a refused call", len(got))
	}
	refuse.Store(false)

	// A free request answered INTERNAL carries no coins: one attempt.
	failures.Store(1)
	if _, err := sc.Version(ctx, srv.host.ID()); !errors.Is(err, ErrInternal) {
		t.Fatalf("got %v", err)
	}
	if got := attempts(); len(got) != 1 {
		t.Fatalf("%d attempts of a free call", len(got))
	}
}

// TestCallNotSent: a call that cannot open a stream says that nothing
// was sent; one whose answer is lost does not.
func TestCallNotSent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := proto.Marshal(&pb.StorageRequest{Op: &pb.StorageRequest_Version{Version: &pb.Version{}}})
	if err != nil {
		t.Fatal(err)
	}
	// A server that has stopped: its address refuses the dial.
	gone := newTestServer(t, serverConfig{addr: transports[0].addr})
	goneID, goneAddrs := gone.host.ID(), gone.host.Addrs()
	gone.host.Close()
	srv := newTestServer(t, serverConfig{addr: transports[0].addr})
	client := newClientHost(t, srv.host)
	client.Peerstore().AddAddrs(goneID, goneAddrs, time.Hour)
	_, err = Call(ctx, client, goneID, StorageID, &pb.Request{Body: body})
	if !errors.Is(err, ErrNotSent) || !transportFailure(err) || !strings.Contains(err.Error(), "opening") {
		t.Fatalf("got %v, want a transport failure wrapping ErrNotSent", err)
	}

	// The server takes the request and drops the connection: sent.
	srv = newTestServer(t, serverConfig{addr: transports[0].addr, wrap: func(Handler) Handler {
		return func(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
			srv.host.Network().ClosePeer(remote)
			return nil, errors.New("gone")
		}
	}})
	connect(t, client, srv.host)
	_, err = Call(ctx, client, srv.host.ID(), StorageID, &pb.Request{Body: body})
	if err == nil || errors.Is(err, ErrNotSent) || !transportFailure(err) {
		t.Fatalf("got %v, want a transport failure after sending", err)
	}
}
