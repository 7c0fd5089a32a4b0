package protocol_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// mintT0 is the mint's clock in these tests.
var mintT0 = time.Unix(1_800_000_000, 0).UTC()

// mintFix is a mint on a real libp2p host with an in-memory store and
// voucher funding, and four keysets: active; expiring (spend window over,
// deposit window open); expired (deposit window over); revoked.
type mintFix struct {
	identity ed25519.PrivateKey
	keys     *protocol.MintKeyring
	store    *protocol.MemMintStore
	funding  *protocol.VoucherFunding
	svc      *protocol.MintService
	host     host.Host

	active, expiring, expired, revoked *coin.KeysetSecret

	seed    [32]byte
	counter atomic.Uint64
}

func mintTestHost(t *testing.T, listen string) host.Host {
	t.Helper()
	opt := libp2p.NoListenAddrs
	if listen != "" {
		opt = libp2p.ListenAddrStrings(listen)
	}
	h, err := libp2p.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// mintTestKey returns a deterministic Ed25519 libp2p key and its peer ID.
func mintTestKey(t *testing.T, seed byte) (crypto.PrivKey, peer.ID) {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(mrand.NewChaCha8([32]byte{seed}))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return key, id
}

func newMintFix(t *testing.T, listen string) *mintFix {
	t.Helper()
	rng := mrand.NewChaCha8([32]byte{'m', 'i', 'n', 't'})
	f := &mintFix{identity: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))}
	day := 24 * time.Hour
	gen := func(nb, iu, su, du time.Duration) *coin.KeysetSecret {
		_, sec, err := coin.GenerateKeyset(rng, f.identity, coin.KeysetParams{
			Unit: "msat", Exponents: []uint8{0, 1, 2, 3, 4, 5, 6, 7},
			NotBefore: mintT0.Add(nb), IssueUntil: mintT0.Add(iu),
			SpendUntil: mintT0.Add(su), DepositUntil: mintT0.Add(du),
		})
		if err != nil {
			t.Fatal(err)
		}
		return sec
	}
	f.active = gen(-time.Hour, day, 2*day, 3*day)
	f.expiring = gen(-3*day, -2*day, -time.Hour, time.Hour)
	f.expired = gen(-4*day, -3*day, -2*day, -time.Hour)
	f.revoked = gen(-time.Hour, day, 2*day, 3*day)
	f.keys = protocol.NewMintKeyring(f.identity.Public().(ed25519.PublicKey))
	for _, s := range []*coin.KeysetSecret{f.active, f.expiring, f.expired, f.revoked} {
		if err := f.keys.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.keys.Revoke(f.revoked.Keyset().ID()); err != nil {
		t.Fatal(err)
	}
	f.store = protocol.NewMemMintStore()
	f.funding = protocol.NewVoucherFunding(f.store, [32]byte{'p', 'a', 'y'})
	f.host = mintTestHost(t, listen)
	f.svc = protocol.NewMintService(f.host.ID(), f.keys, f.store, f.funding,
		protocol.WithMintClock(func() time.Time { return mintT0 }))
	if err := f.svc.Register(f.host, protocol.WithHandleTimeout(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	rand.Read(f.seed[:])
	return f
}

// client starts a host that dials the mint and returns its mint client.
func (f *mintFix) client(t *testing.T) (*protocol.MintClient, host.Host) {
	t.Helper()
	h := mintTestHost(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: f.host.ID(), Addrs: f.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return protocol.NewMintClient(h, f.host.ID(), f.identity.Public().(ed25519.PublicKey)), h
}

func (f *mintFix) voucher(t *testing.T, value uint64) string {
	t.Helper()
	code, err := f.funding.CreateVoucher(context.Background(), rand.Reader, "msat", value)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func (f *mintFix) remaining(t *testing.T, code string) uint64 {
	t.Helper()
	a, err := f.funding.Voucher(context.Background(), code)
	if err != nil {
		t.Fatal(err)
	}
	return a.Remaining
}

// withdrawals prepares one withdrawal per amount, each from a fresh counter.
func (f *mintFix) withdrawals(t *testing.T, ks *coin.Keyset, des [32]byte, amounts ...uint64) []*coin.Withdrawal {
	t.Helper()
	ws := make([]*coin.Withdrawal, len(amounts))
	for i, a := range amounts {
		w, err := coin.NewWithdrawal(&f.seed, f.counter.Add(1), ks, a, des)
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = w
	}
	return ws
}

// challenges runs round one for ws and returns their challenges.
func challenges(ctx context.Context, t *testing.T, mc *protocol.MintClient, ks *coin.Keyset, ws []*coin.Withdrawal) []protocol.BlindChallenge {
	t.Helper()
	wc := make([]protocol.WithdrawCoin, len(ws))
	for i, w := range ws {
		wc[i] = protocol.WithdrawCoin{Amount: w.Amount(), Nonce: w.Nonce()}
	}
	cms, err := mc.WithdrawBegin(ctx, ks.ID(), wc)
	if err != nil {
		t.Fatal(err)
	}
	chs := make([]protocol.BlindChallenge, len(ws))
	for i, w := range ws {
		c0, c1, err := w.Challenges(cms[i].R0, cms[i].R1)
		if err != nil {
			t.Fatal(err)
		}
		chs[i] = protocol.BlindChallenge{Amount: w.Amount(), Nonce: w.Nonce(), C0: c0, C1: c1}
	}
	return chs
}

func finish(t *testing.T, ws []*coin.Withdrawal, answers []coin.Answer) []*coin.Coin {
	t.Helper()
	coins := make([]*coin.Coin, len(ws))
	for i, w := range ws {
		c, err := w.Finish(answers[i])
		if err != nil {
			t.Fatalf("coin %d: %v", i, err)
		}
		coins[i] = c
	}
	return coins
}

// withdraw withdraws coins of amounts from the active keyset, paid by
// voucher code.
func (f *mintFix) withdraw(ctx context.Context, t *testing.T, mc *protocol.MintClient, code string, des [32]byte, amounts ...uint64) ([]*coin.Coin, []*coin.Withdrawal) {
	t.Helper()
	ks := f.active.Keyset()
	ws := f.withdrawals(t, ks, des, amounts...)
	answers, err := mc.WithdrawFinish(ctx, ks.ID(), []byte(code), challenges(ctx, t, mc, ks, ws))
	if err != nil {
		t.Fatal(err)
	}
	return finish(t, ws, answers), ws
}

// localCoin issues a coin of sec directly, inside its issue window: for
// keysets the mint no longer issues from.
func (f *mintFix) localCoin(t *testing.T, sec *coin.KeysetSecret, amount uint64, des [32]byte) (*coin.Coin, ed25519.PrivateKey) {
	t.Helper()
	ks := sec.Keyset()
	w := f.withdrawals(t, ks, des, amount)[0]
	sg, err := sec.Signer(amount)
	if err != nil {
		t.Fatal(err)
	}
	c0, c1, err := w.Challenges(sg.Begin(w.Nonce()))
	if err != nil {
		t.Fatal(err)
	}
	row, err := sg.Finish(time.Unix(ks.NotBefore, 0), w.Nonce(), c0, c1)
	if err != nil {
		t.Fatal(err)
	}
	return finish(t, []*coin.Withdrawal{w}, []coin.Answer{row.Answer()})[0], w.CoinKey()
}

func mustSpend(t *testing.T, c *coin.Coin, key ed25519.PrivateKey, server peer.ID, digest [32]byte) *coin.Spend {
	t.Helper()
	s, err := coin.NewSpend(c, key, []byte(server), digest)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *mintFix) keysetMap() coin.KeysetMap {
	m := coin.KeysetMap{}
	for _, s := range []*coin.KeysetSecret{f.active, f.expiring, f.expired, f.revoked} {
		m.Add(s.Keyset())
	}
	return m
}

// answerOf returns the *protocol.Error of an answer.
func answerOf(t *testing.T, err error) *protocol.Error {
	t.Helper()
	var e *protocol.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want an error answer", err)
	}
	return e
}

func TestMint(t *testing.T) {
	for _, tr := range []struct{ name, addr string }{
		{"tcp", "/ip4/127.0.0.1/tcp/0"},
		{"quic", "/ip4/127.0.0.1/udp/0/quic-v1"},
	} {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			testMint(t, tr.addr)
		})
	}
}

func testMint(t *testing.T, addr string) {
	f := newMintFix(t, addr)
	mc, mh := f.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ks := f.active.Keyset()
	var bearer [32]byte

	t.Run("keysets", func(t *testing.T) {
		got, err := mc.Keysets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 4 {
			t.Fatalf("%d keysets", len(got))
		}
		for _, p := range got {
			if want := p.Keyset.ID() == f.revoked.Keyset().ID(); p.Revoked != want {
				t.Errorf("keyset %x: revoked %v", p.Keyset.ID(), p.Revoked)
			}
		}
		// A client trusting another identity key refuses them.
		other := protocol.NewMintClient(mh, f.host.ID(), make(ed25519.PublicKey, 32))
		if _, err := other.Keysets(ctx); !errors.Is(err, coin.ErrBadSignature) {
			t.Fatalf("other identity: %v", err)
		}
	})

	// Withdraw one coin of each denomination end to end.
	code := f.voucher(t, 1000)
	amounts := []uint64{1, 2, 4, 8, 16, 32, 64, 128}
	ws := f.withdrawals(t, ks, bearer, amounts...)
	chs := challenges(ctx, t, mc, ks, ws)
	var answers []coin.Answer
	var coins []*coin.Coin

	t.Run("withdraw", func(t *testing.T) {
		var err error
		answers, err = mc.WithdrawFinish(ctx, ks.ID(), []byte(code), chs)
		if err != nil {
			t.Fatal(err)
		}
		coins = finish(t, ws, answers)
		v := coin.Verifier{Keysets: f.keysetMap(), Server: []byte("any server"), Window: coin.WindowSpend}
		for i, c := range coins {
			if c.Amount != amounts[i] {
				t.Fatalf("coin %d: amount %d", i, c.Amount)
			}
			if err := v.VerifyCoin(c, mintT0); err != nil {
				t.Fatalf("coin %d: %v", i, err)
			}
		}
		if got := f.remaining(t, code); got != 1000-255 {
			t.Fatalf("voucher has %d left, want %d", got, 1000-255)
		}
	})

	t.Run("retry is answered from the rows", func(t *testing.T) {
		again, err := mc.WithdrawFinish(ctx, ks.ID(), []byte(code), chs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range again {
			if again[i] != answers[i] {
				t.Fatalf("answer %d changed", i)
			}
		}
		// A retry mixing old and new coins pays for the new ones only.
		extra := f.withdrawals(t, ks, bearer, 2)
		mixed := append(append([]protocol.BlindChallenge(nil), chs[:2]...), challenges(ctx, t, mc, ks, extra)...)
		got, err := mc.WithdrawFinish(ctx, ks.ID(), []byte(code), mixed)
		if err != nil {
			t.Fatal(err)
		}
		finish(t, extra, got[2:])
		if got := f.remaining(t, code); got != 1000-255-2 {
			t.Fatalf("voucher has %d left, want %d", got, 1000-255-2)
		}
	})

	t.Run("retry with other challenges is refused", func(t *testing.T) {
		// The same counter with another designation: same nonce, other
		// challenges.
		w, err := coin.NewWithdrawal(&f.seed, counterOf(t, f, ws[3]), ks, 8, coin.Designation([]byte("server")))
		if err != nil {
			t.Fatal(err)
		}
		if w.Nonce() != ws[3].Nonce() {
			t.Fatal("not the same nonce")
		}
		other := challenges(ctx, t, mc, ks, []*coin.Withdrawal{w})
		_, err = mc.WithdrawFinish(ctx, ks.ID(), []byte(code), append([]protocol.BlindChallenge{chs[0]}, other...))
		if !errors.Is(err, protocol.ErrBadRequest) || answerOf(t, err).Message != protocol.ErrNonceReused.Message {
			t.Fatalf("got %v", err)
		}
		if got := f.remaining(t, code); got != 1000-255-2 {
			t.Fatalf("voucher has %d left", got)
		}
	})

	t.Run("restore replays the stored rows", func(t *testing.T) {
		nonces := [][32]byte{{0xee}} // unknown: left out
		for _, w := range ws {
			nonces = append(nonces, w.Nonce())
		}
		rows, err := mc.Restore(ctx, nonces)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(ws) {
			t.Fatalf("%d rows for %d coins", len(rows), len(ws))
		}
		for i, r := range rows {
			// A wallet restored from its seed redoes each withdrawal.
			w, err := coin.NewWithdrawal(&f.seed, counterOf(t, f, ws[i]), ks, r.Amount, bearer)
			if err != nil {
				t.Fatal(err)
			}
			if r.KeysetID != ks.ID() || r.Nonce != w.Nonce() || r.Answer != answers[i] {
				t.Fatalf("row %d: %+v", i, r)
			}
			c0, c1, err := w.Challenges(r.Commitments.R0, r.Commitments.R1)
			if err != nil || !r.Matches(c0, c1) {
				t.Fatalf("row %d: challenges do not match (%v)", i, err)
			}
			c, err := w.Finish(r.Answer)
			if err != nil || !bytes.Equal(c.Bytes(), coins[i].Bytes()) {
				t.Fatalf("row %d: restored another coin (%v)", i, err)
			}
		}
	})

	t.Run("vouchers", func(t *testing.T) {
		small := f.voucher(t, 3)
		pay := func(code string, amounts ...uint64) error {
			ws := f.withdrawals(t, ks, bearer, amounts...)
			answers, err := mc.WithdrawFinish(ctx, ks.ID(), []byte(code), challenges(ctx, t, mc, ks, ws))
			if err == nil {
				finish(t, ws, answers)
			}
			return err
		}
		unknown := "abcdefghijklmnopqrstuvwxyz234567"
		if err := pay(unknown, 1); !errors.Is(err, protocol.ErrNotFound) || answerOf(t, err).Message != protocol.ErrUnknownFunding.Message {
			t.Fatalf("unknown voucher: %v", err)
		}
		if err := pay("short", 1); !errors.Is(err, protocol.ErrBadRequest) {
			t.Fatalf("malformed voucher: %v", err)
		}
		if err := pay(small, 2, 2); !errors.Is(err, protocol.ErrInsufficientPayment) || answerOf(t, err).Message != protocol.ErrInsufficientFunding.Message {
			t.Fatalf("insufficient voucher: %v", err)
		}
		if err := pay(small, 2, 1); err != nil {
			t.Fatal(err)
		}
		if err := pay(small, 1); !errors.Is(err, protocol.ErrInsufficientPayment) || answerOf(t, err).Message != protocol.ErrFundingSpent.Message {
			t.Fatalf("spent voucher: %v", err)
		}
		// A voucher in another unit.
		sats, err := f.funding.CreateVoucher(ctx, rand.Reader, "sat", 100)
		if err != nil {
			t.Fatal(err)
		}
		if err := pay(sats, 1); !errors.Is(err, protocol.ErrBadRequest) {
			t.Fatalf("voucher in another unit: %v", err)
		}
	})

	t.Run("concurrent finishes for one nonce", func(t *testing.T) {
		const n = 24
		code := f.voucher(t, 100)
		i := f.counter.Add(1)
		cws := make([]*coin.Withdrawal, n)
		for j := range cws {
			var err error
			cws[j], err = coin.NewWithdrawal(&f.seed, i, ks, 4, coin.Designation([]byte{byte(j), 'd'}))
			if err != nil {
				t.Fatal(err)
			}
		}
		cchs := make([]protocol.BlindChallenge, n)
		for j := range cws {
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
			if !errors.Is(errs[j], protocol.ErrBadRequest) || answerOf(t, errs[j]).Message != protocol.ErrNonceReused.Message {
				t.Errorf("call %d: %v", j, errs[j])
			}
		}
		if winners != 1 {
			t.Fatalf("%d calls answered, want exactly 1", winners)
		}
		if got := f.remaining(t, code); got != 96 {
			t.Fatalf("voucher has %d left, want 96", got)
		}
	})

	t.Run("errors", func(t *testing.T) {
		begin := func(id [32]byte, amount uint64) error {
			_, err := mc.WithdrawBegin(ctx, id, []protocol.WithdrawCoin{{Amount: amount, Nonce: [32]byte{1}}})
			return err
		}
		for _, tt := range []struct {
			name   string
			id     [32]byte
			amount uint64
			want   error
		}{
			{"unknown keyset", [32]byte{1}, 1, protocol.ErrUnknownKeyset},
			{"revoked keyset", f.revoked.Keyset().ID(), 1, protocol.ErrRevokedKeyset},
			{"issue window over", f.expiring.Keyset().ID(), 1, protocol.ErrExpiredKeyset},
			{"no such denomination", ks.ID(), 3, protocol.ErrBadRequest},
		} {
			if err := begin(tt.id, tt.amount); !errors.Is(err, tt.want) {
				t.Errorf("%s: %v", tt.name, err)
			}
		}
		if _, err := mc.WithdrawBegin(ctx, ks.ID(), nil); !errors.Is(err, protocol.ErrBadRequest) {
			t.Errorf("no coins: %v", err)
		}
		// Envelopes the client stub would not send.
		raw := func(mr *pb.MintRequest, spends [][]byte) error {
			body, err := proto.Marshal(mr)
			if err != nil {
				t.Fatal(err)
			}
			_, err = protocol.Call(ctx, mh, f.host.ID(), protocol.MintID, &pb.Request{Body: body, Spends: spends})
			return err
		}
		balance := &pb.MintRequest_Balance{Balance: &pb.Balance{}}
		if err := raw(&pb.MintRequest{Op: balance}, nil); !errors.Is(err, protocol.ErrBadRequest) {
			t.Errorf("no request ID: %v", err)
		}
		if err := raw(&pb.MintRequest{RequestId: make([]byte, 16), Op: balance}, [][]byte{make([]byte, coin.SpendSize)}); !errors.Is(err, protocol.ErrBadRequest) {
			t.Errorf("spends on Balance: %v", err)
		}
		if err := raw(&pb.MintRequest{RequestId: make([]byte, 16)}, nil); !errors.Is(err, protocol.ErrBadRequest) {
			t.Errorf("no operation: %v", err)
		}
	})

	t.Run("swap", func(t *testing.T) { testMintSwap(ctx, t, f, mc) })
	t.Run("deposit, balance, payout", func(t *testing.T) { testMintDeposit(ctx, t, f) })
}

// counterOf returns the counter a withdrawal of f was made with.
func counterOf(t *testing.T, f *mintFix, w *coin.Withdrawal) uint64 {
	t.Helper()
	for i := uint64(1); i <= f.counter.Load(); i++ {
		if coin.Nonce(&f.seed, i) == w.Nonce() {
			return i
		}
	}
	t.Fatal("no counter")
	return 0
}

func testMintSwap(ctx context.Context, t *testing.T, f *mintFix, mc *protocol.MintClient) {
	ks := f.active.Keyset()
	var bearer [32]byte
	code := f.voucher(t, 100)
	mint := f.host.ID()
	newID := func() [protocol.RequestIDSize]byte {
		var id [protocol.RequestIDSize]byte
		rand.Read(id[:])
		return id
	}
	// swap prepares a swap of inputs (coin, key) into outputs of amounts.
	type input struct {
		c   *coin.Coin
		key ed25519.PrivateKey
	}
	prepare := func(id [protocol.RequestIDSize]byte, ins []input, amounts ...uint64) ([]byte, []*coin.Spend, []*coin.Withdrawal) {
		ws := f.withdrawals(t, ks, bearer, amounts...)
		body, err := protocol.NewSwapBody(id, ks.ID(), challenges(ctx, t, mc, ks, ws))
		if err != nil {
			t.Fatal(err)
		}
		digest := protocol.RequestDigest(protocol.MintID, body)
		spends := make([]*coin.Spend, len(ins))
		for i, in := range ins {
			spends[i] = mustSpend(t, in.c, in.key, mint, digest)
		}
		return body, spends, ws
	}
	coins, ws := f.withdraw(ctx, t, mc, code, bearer, 8)
	eight := input{coins[0], ws[0].CoinKey()}

	// Change making: one 8 into 4 + 2 + 1 + 1.
	body, spends, outs := prepare(newID(), []input{eight}, 4, 2, 1, 1)
	answers, err := mc.Swap(ctx, body, spends)
	if err != nil {
		t.Fatal(err)
	}
	change := finish(t, outs, answers)
	v := coin.Verifier{Keysets: f.keysetMap(), Server: []byte("any server"), Window: coin.WindowSpend}
	for i, c := range change {
		if want := []uint64{4, 2, 1, 1}[i]; c.Amount != want {
			t.Fatalf("change %d: %d", i, c.Amount)
		}
		if err := v.VerifyCoin(c, mintT0); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("retry gets the same answers", func(t *testing.T) {
		again, err := mc.Swap(ctx, body, spends)
		if err != nil {
			t.Fatal(err)
		}
		for i := range again {
			if again[i] != answers[i] {
				t.Fatalf("answer %d changed", i)
			}
		}
	})

	t.Run("the same request ID with another body is refused", func(t *testing.T) {
		id := [protocol.RequestIDSize]byte(mustUnmarshalMint(t, body).RequestId)
		b2, s2, _ := prepare(id, []input{eight}, 8)
		if _, err := mc.Swap(ctx, b2, s2); !errors.Is(err, protocol.ErrBadRequest) || answerOf(t, err).Message != protocol.ErrMintRequestReused.Message {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("a swapped coin is refused with evidence", func(t *testing.T) {
		b2, s2, _ := prepare(newID(), []input{eight}, 8)
		_, err := mc.Swap(ctx, b2, s2)
		var refused *protocol.SwapRefusedError
		if !errors.As(err, &refused) || !errors.Is(err, protocol.ErrDoubleSpend) {
			t.Fatalf("got %v", err)
		}
		in := refused.Inputs[0]
		if in.Status != pb.DepositStatus_DEPOSIT_DOUBLE_SPENT || in.Conflict.Server != mint ||
			in.Conflict.Digest != protocol.RequestDigest(protocol.MintID, body) {
			t.Fatalf("evidence %+v", in)
		}
		if err := in.Conflict.Verify(f.keysetMap(), eight.c.Pub, mintT0); err != nil {
			t.Fatalf("evidence does not verify: %v", err)
		}
	})

	t.Run("totals must match", func(t *testing.T) {
		b2, s2, _ := prepare(newID(), []input{{change[0], outs[0].CoinKey()}}, 2, 1)
		if _, err := mc.Swap(ctx, b2, s2); !errors.Is(err, protocol.ErrBadRequest) {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("designated coins are refused, coins servers no longer take swap", func(t *testing.T) {
		// A coin designated to a server is redeemable by that server only:
		// were it swappable, a client could be served and then swap the
		// coin back before the server deposits it.
		dc, dws := f.withdraw(ctx, t, mc, code, coin.Designation([]byte("a server")), 2)
		b1, s1, _ := prepare(newID(), []input{{dc[0], dws[0].CoinKey()}}, 2)
		_, err := mc.Swap(ctx, b1, s1)
		var refused *protocol.SwapRefusedError
		if !errors.As(err, &refused) || refused.Inputs[0].Status != pb.DepositStatus_DEPOSIT_INVALID {
			t.Fatalf("designated coin: got %v", err)
		}
		// A coin whose keyset's spend window is over: still swappable until
		// its deposit window ends.
		old, oldKey := f.localCoin(t, f.expiring, 4, bearer)
		b2, s2, outs2 := prepare(newID(), []input{{old, oldKey}}, 4)
		a2, err := mc.Swap(ctx, b2, s2)
		if err != nil {
			t.Fatal(err)
		}
		finish(t, outs2, a2)
	})

	t.Run("an expired input refuses the swap and spends nothing", func(t *testing.T) {
		dead, deadKey := f.localCoin(t, f.expired, 1, bearer)
		good := input{change[3], outs[3].CoinKey()}
		b2, s2, _ := prepare(newID(), []input{{dead, deadKey}, good}, 2)
		_, err := mc.Swap(ctx, b2, s2)
		var refused *protocol.SwapRefusedError
		if !errors.As(err, &refused) || !errors.Is(err, protocol.ErrExpiredKeyset) {
			t.Fatalf("got %v", err)
		}
		if refused.Inputs[0].Status != pb.DepositStatus_DEPOSIT_EXPIRED || refused.Inputs[1].Status != pb.DepositStatus_DEPOSIT_NOT_TAKEN {
			t.Fatalf("inputs %+v", refused.Inputs)
		}
		// The good coin was not taken.
		b3, s3, outs3 := prepare(newID(), []input{good}, 1)
		a3, err := mc.Swap(ctx, b3, s3)
		if err != nil {
			t.Fatal(err)
		}
		finish(t, outs3, a3)
	})

	t.Run("a spend for another digest is invalid", func(t *testing.T) {
		b2, _, _ := prepare(newID(), nil, 2)
		wrong := mustSpend(t, change[1], outs[1].CoinKey(), mint, sha256.Sum256([]byte("another request")))
		_, err := mc.Swap(ctx, b2, []*coin.Spend{wrong})
		if !errors.Is(err, protocol.ErrInvalidCoin) {
			t.Fatalf("got %v", err)
		}
	})
}

func mustUnmarshalMint(t *testing.T, body []byte) *pb.MintRequest {
	t.Helper()
	mr := new(pb.MintRequest)
	if err := proto.Unmarshal(body, mr); err != nil {
		t.Fatal(err)
	}
	return mr
}

func testMintDeposit(ctx context.Context, t *testing.T, f *mintFix) {
	var bearer [32]byte
	wallet, _ := f.client(t)
	s1c, s1 := f.client(t)
	s2c, s2 := f.client(t)
	code := f.voucher(t, 1000)
	d1 := sha256.Sum256([]byte("request 1"))
	d2 := sha256.Sum256([]byte("request 2"))
	d3 := sha256.Sum256([]byte("request 3"))

	coins, ws := f.withdraw(ctx, t, wallet, code, bearer, 1, 2, 4, 8)
	des, dws := f.withdraw(ctx, t, wallet, code, coin.Designation([]byte(s1.ID())), 16)
	a := mustSpend(t, coins[0], ws[0].CoinKey(), s1.ID(), d1)
	b := mustSpend(t, des[0], dws[0].CoinKey(), s1.ID(), d1)
	c1 := mustSpend(t, coins[1], ws[1].CoinKey(), s1.ID(), d1)
	c2 := mustSpend(t, coins[1], ws[1].CoinKey(), s2.ID(), d2) // the same coin at another server
	bad := mustSpend(t, coins[2], ws[2].CoinKey(), s1.ID(), d1)
	bad.Sig[5] ^= 1
	oldCoin, oldKey := f.localCoin(t, f.expired, 32, bearer)
	expired := mustSpend(t, oldCoin, oldKey, s1.ID(), d1)
	revCoin, revKey := f.localCoin(t, f.revoked, 64, bearer)
	revoked := mustSpend(t, revCoin, revKey, s1.ID(), d1)
	elsewhere := mustSpend(t, des[0], dws[0].CoinKey(), s2.ID(), d2) // designated to s1

	items := func(d [32]byte, ss ...*coin.Spend) []coin.Item {
		out := make([]coin.Item, len(ss))
		for i, s := range ss {
			out[i] = coin.Item{Spend: s, Digest: d}
		}
		return out
	}
	statuses := func(rs []protocol.DepositResult) []pb.DepositStatus {
		out := make([]pb.DepositStatus, len(rs))
		for i, r := range rs {
			out[i] = r.Status
		}
		return out
	}
	expect := func(t *testing.T, rs []protocol.DepositResult, err error, want ...pb.DepositStatus) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		got := statuses(rs)
		if len(got) != len(want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("got %v, want %v", got, want)
			}
		}
	}
	const (
		credited = pb.DepositStatus_DEPOSIT_CREDITED
		already  = pb.DepositStatus_DEPOSIT_ALREADY_CREDITED
		double   = pb.DepositStatus_DEPOSIT_DOUBLE_SPENT
		invalid  = pb.DepositStatus_DEPOSIT_INVALID
	)

	t.Run("credited, invalid, expired, revoked", func(t *testing.T) {
		rs, err := s1c.Deposit(ctx, items(d1, a, b, c1, bad, expired, revoked))
		expect(t, rs, err, credited, credited, credited, invalid,
			pb.DepositStatus_DEPOSIT_EXPIRED, pb.DepositStatus_DEPOSIT_REVOKED)
	})

	t.Run("already credited", func(t *testing.T) {
		// A retry, and the same coin twice in one batch.
		rs, err := s1c.Deposit(ctx, items(d1, a, b, a))
		expect(t, rs, err, already, already, already)
	})

	t.Run("double spent, with evidence", func(t *testing.T) {
		// Another server; the same server for another request; a coin
		// designated to another server.
		other := mustSpend(t, coins[0], ws[0].CoinKey(), s1.ID(), d3)
		rs, err := s2c.Deposit(ctx, items(d2, c2, elsewhere))
		expect(t, rs, err, double, invalid)
		ev := rs[0].Conflict
		if ev.Server != s1.ID() || ev.Digest != d1 || !bytes.Equal(ev.Spend.Bytes(), c1.Bytes()) {
			t.Fatalf("evidence %+v", ev)
		}
		if err := ev.Verify(f.keysetMap(), coins[1].Pub, mintT0); err != nil {
			t.Fatalf("evidence does not verify: %v", err)
		}
		rs, err = s1c.Deposit(ctx, items(d3, other))
		expect(t, rs, err, double)
		if ev := rs[0].Conflict; ev.Server != s1.ID() || ev.Digest != d1 {
			t.Fatalf("evidence %+v", ev)
		}
	})

	t.Run("a coin swapped first is double spent", func(t *testing.T) {
		sc, sws := f.withdraw(ctx, t, wallet, code, bearer, 4)
		ws2 := f.withdrawals(t, f.active.Keyset(), bearer, 4)
		body, err := protocol.NewSwapBody([16]byte{'s', 'w'}, f.active.Keyset().ID(), challenges(ctx, t, wallet, f.active.Keyset(), ws2))
		if err != nil {
			t.Fatal(err)
		}
		digest := protocol.RequestDigest(protocol.MintID, body)
		if _, err := wallet.Swap(ctx, body, []*coin.Spend{mustSpend(t, sc[0], sws[0].CoinKey(), f.host.ID(), digest)}); err != nil {
			t.Fatal(err)
		}
		rs, err := s1c.Deposit(ctx, items(d1, mustSpend(t, sc[0], sws[0].CoinKey(), s1.ID(), d1)))
		expect(t, rs, err, double)
		if ev := rs[0].Conflict; ev.Server != f.host.ID() || ev.Digest != digest {
			t.Fatalf("evidence %+v", ev)
		}
	})

	t.Run("balance", func(t *testing.T) {
		got, err := s1c.Balance(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != (protocol.UnitAmount{Unit: "msat", Amount: 1 + 16 + 2}) {
			t.Fatalf("s1: %+v", got)
		}
		if got, err := s2c.Balance(ctx); err != nil || len(got) != 0 {
			t.Fatalf("s2: %+v, %v", got, err)
		}
	})

	t.Run("payout is idempotent", func(t *testing.T) {
		id := [protocol.RequestIDSize]byte{'p', 'a', 'y'}
		amount := protocol.UnitAmount{Unit: "msat", Amount: 15}
		first, err := s1c.Payout(ctx, id, amount, nil)
		if err != nil {
			t.Fatal(err)
		}
		if first.Remaining != 4 || len(first.Receipt) == 0 {
			t.Fatalf("payout %+v", first)
		}
		again, err := s1c.Payout(ctx, id, amount, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Receipt, first.Receipt) || again.Remaining != 4 {
			t.Fatalf("retry %+v", again)
		}
		if _, err := s1c.Payout(ctx, id, protocol.UnitAmount{Unit: "msat", Amount: 1}, nil); !errors.Is(err, protocol.ErrBadRequest) ||
			answerOf(t, err).Message != protocol.ErrMintRequestReused.Message {
			t.Fatalf("reused ID: %v", err)
		}
		if _, err := s1c.Payout(ctx, [16]byte{'b', 'i', 'g'}, protocol.UnitAmount{Unit: "msat", Amount: 5}, nil); !errors.Is(err, protocol.ErrBadRequest) ||
			answerOf(t, err).Message != protocol.ErrInsufficientBalance.Message {
			t.Fatalf("above balance: %v", err)
		}
		if got, _ := s1c.Balance(ctx); got[0].Amount != 4 {
			t.Fatalf("balance %+v", got)
		}
		// The receipt is a voucher worth the payout.
		if got := f.remaining(t, string(first.Receipt)); got != 15 {
			t.Fatalf("payout voucher holds %d", got)
		}
		f.withdraw(ctx, t, wallet, string(first.Receipt), bearer, 8, 4, 2, 1)
	})
}
