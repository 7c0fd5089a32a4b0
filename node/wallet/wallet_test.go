package wallet

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
)

var ctx = context.Background()

func TestOpenKeepsSeed(t *testing.T) {
	m := newTestMint(t, 1)
	path := filepath.Join(t.TempDir(), "w.db")
	w, err := Open(path, m.info())
	require.NoError(t, err)
	phrase := w.Export()
	seed := w.seed
	require.NotEqual(t, [32]byte{}, seed)
	require.NoError(t, w.Close())

	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	w, err = Open(path, m.info())
	require.NoError(t, err)
	require.Equal(t, phrase, w.Export())
	require.NoError(t, w.Close())

	// Another wallet file gets another seed.
	w2, err := Open(filepath.Join(t.TempDir(), "w.db"), m.info())
	require.NoError(t, err)
	require.NotEqual(t, phrase, w2.Export())
	require.NoError(t, w2.Close())

	// Another mint key is refused.
	other := newTestMint(t, 2)
	_, err = Open(path, other.info())
	require.ErrorIs(t, err, ErrMintMismatch)

	_, err = Open(path, Mint{Key: m.info().Key})
	require.ErrorIs(t, err, ErrInvalid)
}

func TestRedacted(t *testing.T) {
	w, m, _ := newTest(t)
	wd, err := w.NextWithdrawal(ctx, m.ks, 4, [32]byte{})
	require.NoError(t, err)
	seedHex := hex.EncodeToString(w.seed[:])
	phrase := w.Export()
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		out := fmt.Sprintf(f, w) + fmt.Sprintf(f, wd) + fmt.Sprintf(f, *wd)
		require.NotContains(t, out, seedHex, f)
		require.NotContains(t, out, phrase[11:30], f)
	}
}

func TestExportRestore(t *testing.T) {
	w, m, c := newTest(t)
	coins := m.withdraw(t, w, [32]byte{}, 8, 2)
	phrase := w.Export()
	require.True(t, strings.HasPrefix(phrase, "scrip-seed-"))
	require.Len(t, strings.Split(phrase, "-"), 2+14)

	path := filepath.Join(t.TempDir(), "restored.db")
	r, err := Restore(path, phrase, m.info(), WithClock(c.now))
	require.NoError(t, err)
	require.Equal(t, w.seed, r.seed)
	require.Equal(t, phrase, r.Export())
	n1, _ := w.Nonces(0, 3)
	n2, _ := r.Nonces(0, 3)
	require.Equal(t, n1, n2)

	// The restored wallet recovers the coins from the mint's answers.
	for i, want := range coins {
		wd, err := r.RecoverWithdrawal(ctx, uint64(i), m.ks, want.Amount, [32]byte{})
		require.NoError(t, err)
		got, err := r.FinishWithdrawal(ctx, wd, m.answer(t, r, wd))
		require.NoError(t, err)
		require.Equal(t, want.Pub, got.Pub)
	}
	next, err := r.NextCounter(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, next)
	require.NoError(t, r.Close())

	// Restoring onto the same wallet reopens it; onto another, refuses.
	r, err = Restore(path, " "+strings.ToLower(phrase)+"\n", m.info())
	require.NoError(t, err)
	require.NoError(t, r.Close())
	other, err := Open(filepath.Join(t.TempDir(), "other.db"), m.info())
	require.NoError(t, err)
	otherPath := other.db.Path()
	require.NoError(t, other.Close())
	_, err = Restore(otherPath, phrase, m.info())
	require.ErrorIs(t, err, ErrExists)
}

func TestPhraseTypos(t *testing.T) {
	var seed [32]byte
	rand.NewChaCha8([32]byte{9}).Read(seed[:])
	phrase := formatPhrase(&seed)
	got, err := parsePhrase(phrase)
	require.NoError(t, err)
	require.Equal(t, seed, got)

	// Case, spaces and dash placement do not matter.
	body := strings.ReplaceAll(phrase[len(phrasePrefix):], "-", "")
	for _, p := range []string{
		strings.ToLower(phrase),
		"SCRIP-SEED-" + body,
		phrasePrefix + strings.Join(strings.SplitN(body, "", -1), " "),
	} {
		got, err := parsePhrase(p)
		require.NoError(t, err)
		require.Equal(t, seed, got)
	}

	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	// Every single-character substitution is caught.
	for i := range len(body) {
		for _, r := range alphabet {
			if byte(r) == body[i] {
				continue
			}
			typo := phrasePrefix + body[:i] + string(r) + body[i+1:]
			_, err := parsePhrase(typo)
			require.ErrorIs(t, err, ErrPhrase, "position %d", i)
		}
	}
	// Every swap of two adjacent, different characters is caught.
	for i := 0; i+1 < len(body); i++ {
		if body[i] == body[i+1] {
			continue
		}
		b := []byte(body)
		b[i], b[i+1] = b[i+1], b[i]
		_, err := parsePhrase(phrasePrefix + string(b))
		require.ErrorIs(t, err, ErrPhrase, "swap at %d", i)
	}
	for name, p := range map[string]string{
		"empty":     "",
		"prefix":    "scrip-seeb-" + body,
		"short":     phrasePrefix + body[1:],
		"long":      phrasePrefix + body + "A",
		"bad char":  phrasePrefix + "1" + body[1:],
		"very long": phrasePrefix + strings.Repeat("A", 10000),
	} {
		_, err := parsePhrase(p)
		require.ErrorIs(t, err, ErrPhrase, name)
		require.NotContains(t, err.Error(), body[:12], name)
	}
}

// TestPhraseVectors pins the phrase format (SPEC.md §11).
func TestPhraseVectors(t *testing.T) {
	var zero, count [32]byte
	for i := range count {
		count[i] = byte(i)
	}
	for seed, want := range map[[32]byte]string{
		zero:  "scrip-seed-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAM-MQAH",
		count: "scrip-seed-AAAQ-EAYE-AUDA-OCAJ-BIFQ-YDIO-B4IB-CEQT-CQKR-MFYY-DENB-WHA5-DYPR-GCNQ",
	} {
		require.Equal(t, want, formatPhrase(&seed))
		got, err := parsePhrase(want)
		require.NoError(t, err)
		require.Equal(t, seed, got)
	}
}

func TestCounterNeverReused(t *testing.T) {
	m := newTestMint(t, 1)
	c := &clock{t: t0}
	path := filepath.Join(t.TempDir(), "w.db")
	w := openTest(t, m, path, c)
	seen := map[uint64]bool{}
	take := func(w *Wallet, n int) {
		amounts := make([]uint64, n)
		for i := range amounts {
			amounts[i] = 1
		}
		wds, err := w.NextWithdrawals(ctx, m.ks, amounts, [32]byte{})
		require.NoError(t, err)
		for _, wd := range wds {
			require.False(t, seen[wd.Counter], "counter %d reused", wd.Counter)
			seen[wd.Counter] = true
		}
	}
	take(w, 3)
	wd, err := w.NextWithdrawal(ctx, m.ks, 2, [32]byte{})
	require.NoError(t, err)
	seen[wd.Counter] = true
	require.NoError(t, w.AbandonWithdrawal(ctx, wd))
	require.ErrorIs(t, w.AbandonWithdrawal(ctx, wd), ErrUnknownWithdrawal)
	require.NoError(t, w.Close())

	w = openTest(t, m, path, c)
	take(w, 2)
	require.NoError(t, w.AdvanceCounter(ctx, 100))
	require.NoError(t, w.AdvanceCounter(ctx, 50)) // never lowers
	wd, err = w.NextWithdrawal(ctx, m.ks, 1, [32]byte{})
	require.NoError(t, err)
	require.EqualValues(t, 100, wd.Counter)

	_, err = w.NextWithdrawal(ctx, m.ks, 3, [32]byte{})
	require.ErrorIs(t, err, coin.ErrAmount)
	c.advance(25 * time.Hour)
	_, err = w.NextWithdrawal(ctx, m.ks, 1, [32]byte{})
	require.ErrorIs(t, err, coin.ErrOutsideWindow)
	next, err := w.NextCounter(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 101, next, "refused withdrawals take no counter")
}

const crashEnv = "SCRIP_WALLET_CRASH_CHILD"

// TestCounterSurvivesKill runs a child process that takes counters in a
// loop and prints each one it was given, kills it with SIGKILL at random
// moments, and checks after every kill that the reopened wallet's next
// counter is above every counter the child printed, and that each printed
// counter has its pending withdrawal.
func TestCounterSurvivesKill(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path)
		return
	}
	m := newTestMint(t, 1)
	path := filepath.Join(t.TempDir(), "w.db")
	w, err := Open(path, m.info())
	require.NoError(t, err)
	_, err = w.AddKeyset(ctx, m.ks.Bytes())
	require.NoError(t, err)
	require.NoError(t, w.Close())

	rnd := rand.New(rand.NewPCG(1, 2))
	var max uint64
	printed := 0
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCounterSurvivesKill$")
		cmd.Env = append(os.Environ(), crashEnv+"="+path, "SCRIP_WALLET_MINT="+hex.EncodeToString(m.info().Key))
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(out)
		want := 3 + rnd.IntN(20)
		var got []uint64
		killed := false
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "counter ") {
				continue
			}
			v, err := strconv.ParseUint(strings.TrimPrefix(line, "counter "), 10, 64)
			require.NoError(t, err)
			got = append(got, v)
			if len(got) >= want && !killed {
				time.Sleep(time.Duration(rnd.IntN(1500)) * time.Microsecond)
				require.NoError(t, cmd.Process.Kill())
				killed = true
			}
		}
		_ = cmd.Wait()
		require.True(t, killed, "child ended by itself")
		require.NotEmpty(t, got)
		for _, v := range got {
			if printed > 0 {
				require.Greater(t, v, max, "round %d: counter %d reused", round, v)
			}
			max = v
			printed++
		}

		w, err := Open(path, m.info())
		require.NoError(t, err)
		next, err := w.NextCounter(ctx)
		require.NoError(t, err)
		require.Greater(t, next, max, "round %d", round)
		pend, err := w.PendingWithdrawals(ctx)
		require.NoError(t, err)
		have := map[uint64]bool{}
		for _, wd := range pend {
			have[wd.Counter] = true
		}
		for _, v := range got {
			require.True(t, have[v], "round %d: counter %d has no pending withdrawal", round, v)
		}
		require.NoError(t, w.Close())
	}
	t.Logf("%d counters over 6 kills, last %d", printed, max)
}

func crashChild(path string) {
	key, _ := hex.DecodeString(os.Getenv("SCRIP_WALLET_MINT"))
	w, err := Open(path, Mint{Key: key, Peer: []byte("mint-peer")}, WithClock(func() time.Time { return t0 }), WithLockTimeout(10*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	ks := w.Keysets()[0]
	for {
		wd, err := w.NextWithdrawal(ctx, ks, 1, [32]byte{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stdout, "counter %d\n", wd.Counter)
	}
}

func TestWithdrawResume(t *testing.T) {
	m := newTestMint(t, 1)
	c := &clock{t: t0}
	path := filepath.Join(t.TempDir(), "w.db")
	w := openTest(t, m, path, c)
	wds, err := w.NextWithdrawals(ctx, m.ks, []uint64{16, 4}, coin.Designation([]byte("server A")))
	require.NoError(t, err)
	_, err = w.FinishWithdrawal(ctx, wds[0], coin.Answer{})
	require.ErrorIs(t, err, ErrOrder)

	// Round two for the first coin, then a crash before the answer.
	signer, _ := m.sec.Signer(16)
	r0, r1 := signer.Begin(wds[0].Nonce())
	c0, c1, err := w.Challenges(ctx, wds[0], r0, r1)
	require.NoError(t, err)
	row, err := signer.Finish(t0, wds[0].Nonce(), c0, c1) // the mint commits and answers; the answer is lost
	require.NoError(t, err)
	bal, err := w.Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, Balance{Pending: 20}, bal)
	require.NoError(t, w.Close())

	w = openTest(t, m, path, c)
	pend, err := w.PendingWithdrawals(ctx)
	require.NoError(t, err)
	require.Len(t, pend, 2)
	p := pend[0]
	require.Equal(t, wds[0].Counter, p.Counter)
	require.EqualValues(t, 16, p.Amount)
	require.Equal(t, wds[0].Nonce(), p.Nonce())
	sc0, sc1, ok := p.Challenges()
	require.True(t, ok)
	require.Equal(t, [2][32]byte{c0, c1}, [2][32]byte{sc0, sc1}, "a retry sends the same challenges")
	require.True(t, row.Matches(sc0, sc1))
	_, _, ok = pend[1].Challenges()
	require.False(t, ok)

	// A mint that changes its commitments is refused.
	_, _, err = w.Challenges(ctx, p, r1, r0)
	require.ErrorIs(t, err, coin.ErrBadKey)
	fresh := pend[1]
	_, _, err = w.Challenges(ctx, fresh, [32]byte{1}, r1)
	require.ErrorIs(t, err, coin.ErrBadKey)

	// A wrong answer leaves the withdrawal pending; the stored row's
	// answer finishes it.
	bad := row.Answer()
	bad.B ^= 1
	_, err = w.FinishWithdrawal(ctx, p, bad)
	require.ErrorIs(t, err, coin.ErrBadSignature)
	cn, err := w.FinishWithdrawal(ctx, p, row.Answer())
	require.NoError(t, err)
	require.Equal(t, coin.Designation([]byte("server A")), cn.Designated)
	again, err := w.FinishWithdrawal(ctx, p, row.Answer())
	require.NoError(t, err, "finishing twice returns the stored coin")
	require.Equal(t, cn.Pub, again.Pub)

	_, err = w.FinishWithdrawal(ctx, fresh, m.answer(t, w, fresh))
	require.NoError(t, err)
	pend, err = w.PendingWithdrawals(ctx)
	require.NoError(t, err)
	require.Empty(t, pend)
	bal, err = w.Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, Balance{Unspent: 20}, bal)
}

func TestAddKeyset(t *testing.T) {
	w, m, _ := newTest(t)
	ks, err := w.AddKeyset(ctx, m.ks.Bytes())
	require.NoError(t, err)
	require.Equal(t, m.ks.ID(), ks.ID())
	_, err = w.AddKeyset(ctx, m.ks.Bytes())
	require.NoError(t, err)
	require.Len(t, w.Keysets(), 1)

	other := newTestMint(t, 3)
	_, err = w.AddKeyset(ctx, other.ks.Bytes())
	require.ErrorIs(t, err, coin.ErrBadSignature)
	_, err = w.NextWithdrawal(ctx, other.ks, 1, [32]byte{})
	require.ErrorIs(t, err, coin.ErrBadSignature)
	_, ok := w.Keyset(other.ks.ID())
	require.False(t, ok)
}

// spendsPay checks that the spends verify at server and sum to price.
func spendsPay(t *testing.T, m *testMint, spends []*coin.Spend, server []byte, digest [32]byte, price uint64) {
	t.Helper()
	v := m.verifier(server)
	var sum uint64
	for _, s := range spends {
		require.NoError(t, v.VerifySpend(s, digest, t0))
		sum += s.Amount
	}
	require.Equal(t, price, sum)
}

func amountsOf(spends []*coin.Spend) []uint64 {
	var out []uint64
	for _, s := range spends {
		out = append(out, s.Amount)
	}
	return out
}

func stateOf(t *testing.T, w *Wallet, pub [32]byte) CoinInfo {
	t.Helper()
	cs, err := w.Coins(ctx)
	require.NoError(t, err)
	for _, c := range cs {
		if c.Coin.Pub == pub {
			return c
		}
	}
	t.Fatalf("coin not found")
	return CoinInfo{}
}

func TestReserveSettle(t *testing.T) {
	w, m, clk := newTest(t)
	A, B, C := []byte("server A"), []byte("server B"), []byte("server C")
	eight := m.withdraw(t, w, [32]byte{}, 1, 2, 8)[2].Pub
	dA := m.withdraw(t, w, coin.Designation(A), 4)[0]
	dB := m.withdraw(t, w, coin.Designation(B), 2)[0]
	d := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }

	// A prefers its designated coin.
	sp, err := w.Reserve(ctx, A, []byte("r1"), d("r1"), 5)
	require.NoError(t, err)
	spendsPay(t, m, sp, A, d("r1"), 5)
	require.Equal(t, dA.Pub, sp[0].Pub)
	require.ElementsMatch(t, []uint64{4, 1}, amountsOf(sp))
	bearer1 := sp[1].Pub
	bal, _ := w.Balance(ctx)
	require.Equal(t, Balance{Unspent: 12, Reserved: 5}, bal)

	// A retry gets the same spends; another use of the ID conflicts.
	again, err := w.Reserve(ctx, A, []byte("r1"), d("r1"), 5)
	require.NoError(t, err)
	require.Equal(t, sp, again)
	_, err = w.Reserve(ctx, A, []byte("r1"), d("other"), 5)
	require.ErrorIs(t, err, ErrRequestConflict)
	_, err = w.Reserve(ctx, B, []byte("r1"), d("r1"), 5)
	require.ErrorIs(t, err, ErrRequestConflict)

	require.NoError(t, w.Settle(ctx, []byte("r1"), true))
	require.NoError(t, w.Settle(ctx, []byte("r1"), true))
	require.ErrorIs(t, w.Settle(ctx, []byte("r1"), false), ErrSettled)
	require.ErrorIs(t, w.Settle(ctx, []byte("nope"), true), ErrUnknownRequest)
	_, err = w.Reserve(ctx, A, []byte("r1"), d("r1"), 5)
	require.ErrorIs(t, err, ErrRequestConflict, "a settled request ID is not reused")
	require.Equal(t, Spent, stateOf(t, w, dA.Pub).State)

	// C may not use B's designated coin: it gets the bearer 2.
	sp, err = w.Reserve(ctx, C, []byte("r2"), d("r2"), 2)
	require.NoError(t, err)
	spendsPay(t, m, sp, C, d("r2"), 2)
	bearer2 := sp[0].Pub
	require.NotEqual(t, dB.Pub, bearer2)
	// C refuses without recording: the coin is bound to C.
	require.NoError(t, w.Settle(ctx, []byte("r2"), false))
	require.NoError(t, w.Settle(ctx, []byte("r2"), false))
	info := stateOf(t, w, bearer2)
	require.Equal(t, Bound, info.State)
	require.Equal(t, C, info.Server)
	bal, _ = w.Balance(ctx)
	require.Equal(t, Balance{Unspent: 10, Bound: 2}, bal)
	bound, err := w.Bound(ctx)
	require.NoError(t, err)
	require.Len(t, bound, 1)

	// A may not use the coin bound to C nor B's coin: only the 8 is
	// usable, and it cannot pay 2 exactly.
	_, err = w.Reserve(ctx, A, []byte("r3"), d("r3"), 2)
	require.ErrorIs(t, err, coin.ErrNoExactChange)
	_, err = w.Reserve(ctx, A, []byte("r3"), d("r3"), 9)
	require.ErrorIs(t, err, ErrInsufficientFunds)

	// C gets its bound coin back; B gets its designated coin.
	sp, err = w.Reserve(ctx, C, []byte("r4"), d("r4"), 2)
	require.NoError(t, err)
	require.Equal(t, bearer2, sp[0].Pub)
	require.NoError(t, w.Settle(ctx, []byte("r4"), false))
	sp, err = w.Reserve(ctx, B, []byte("r5"), d("r5"), 2)
	require.NoError(t, err)
	require.Equal(t, dB.Pub, sp[0].Pub)

	// B never answers two payments: one with its designated coin, one
	// with a bearer coin.
	bB := m.withdraw(t, w, [32]byte{}, 16)[0]
	sp, err = w.Reserve(ctx, B, []byte("r6"), d("r6"), 16)
	require.NoError(t, err)
	require.Equal(t, bB.Pub, sp[0].Pub)
	bal, _ = w.Balance(ctx)
	require.Equal(t, Balance{Unspent: 8, Reserved: 18, Bound: 2}, bal)

	// After the timeout both are listed.
	old, err := w.ReservedOlderThan(ctx, time.Minute)
	require.NoError(t, err)
	require.Empty(t, old)
	clk.advance(2 * time.Minute)
	old, err = w.ReservedOlderThan(ctx, time.Minute)
	require.NoError(t, err)
	require.Len(t, old, 2)
	require.Equal(t, []byte("r5"), old[0].RequestID)
	require.Equal(t, B, old[0].Server)
	require.Equal(t, [][32]byte{dB.Pub}, old[0].Coins)
	require.Equal(t, []byte("r6"), old[1].RequestID)
	require.Equal(t, B, old[1].Server)
	require.Equal(t, [][32]byte{bB.Pub}, old[1].Coins)

	// The bearer coin reserved at B and the bearer coin bound to C go to
	// the mint in a swap.
	swap := [][32]byte{bB.Pub, bearer2}
	sp, err = w.ReserveSwap(ctx, []byte("s1"), d("s1"), swap)
	require.NoError(t, err)
	require.Len(t, sp, 2)
	mv := &coin.Verifier{Keysets: coin.KeysetMap{m.ks.ID(): m.ks}, Server: m.peer, Window: coin.WindowDeposit}
	for _, s := range sp {
		require.NoError(t, mv.VerifySpend(s, d("s1"), t0))
	}
	again, err = w.ReserveSwap(ctx, []byte("s1"), d("s1"), swap)
	require.NoError(t, err)
	require.Equal(t, sp, again)
	_, err = w.ReserveSwap(ctx, []byte("s1"), d("s1"), swap[:1])
	require.ErrorIs(t, err, ErrRequestConflict)
	old, err = w.ReservedOlderThan(ctx, time.Minute)
	require.NoError(t, err)
	require.Len(t, old, 1, "r6 lost its only coin to the swap")
	require.Equal(t, []byte("r5"), old[0].RequestID)
	_, err = w.Reserve(ctx, B, []byte("r6"), d("r6"), 16)
	require.ErrorIs(t, err, ErrRequestConflict, "r6's coin is in the swap now")
	require.NoError(t, w.Settle(ctx, []byte("r6"), true), "settling a moved request changes nothing")
	info = stateOf(t, w, bB.Pub)
	require.Equal(t, Reserved, info.State)
	require.Equal(t, m.peer, info.Server)
	require.Equal(t, []byte("s1"), info.RequestID)

	// B's designated coin, reserved at silent B, cannot be swapped, alone
	// or with a bearer coin; the refused call changes nothing.
	_, err = w.ReserveSwap(ctx, []byte("s2"), d("s2"), [][32]byte{dB.Pub})
	require.ErrorIs(t, err, ErrUnavailable)
	_, err = w.ReserveSwap(ctx, []byte("s2"), d("s2"), [][32]byte{eight, dB.Pub})
	require.ErrorIs(t, err, ErrUnavailable)
	require.Equal(t, Unspent, stateOf(t, w, eight).State)
	info = stateOf(t, w, dB.Pub)
	require.Equal(t, Reserved, info.State)
	require.Equal(t, B, info.Server)
	require.Equal(t, []byte("r5"), info.RequestID)
	old, err = w.ReservedOlderThan(ctx, time.Minute)
	require.NoError(t, err)
	require.Len(t, old, 1)
	require.Equal(t, [][32]byte{dB.Pub}, old[0].Coins)
	// It stays usable at B: a retry of r5 gets the same spend.
	sp, err = w.Reserve(ctx, B, []byte("r5"), d("r5"), 2)
	require.NoError(t, err)
	require.Equal(t, dB.Pub, sp[0].Pub)
	spendsPay(t, m, sp, B, d("r5"), 2)

	// Coins in a swap, spent or unknown cannot be swapped.
	_, err = w.ReserveSwap(ctx, []byte("s2"), d("s2"), [][32]byte{bB.Pub})
	require.ErrorIs(t, err, ErrUnavailable)
	_, err = w.ReserveSwap(ctx, []byte("s2"), d("s2"), [][32]byte{bearer1})
	require.ErrorIs(t, err, ErrUnavailable)
	_, err = w.ReserveSwap(ctx, []byte("s2"), d("s2"), [][32]byte{{7}})
	require.ErrorIs(t, err, ErrUnavailable)
	_, err = w.ReserveSwap(ctx, []byte("s2"), d("s2"), [][32]byte{{7}, {7}})
	require.ErrorIs(t, err, ErrInvalid)

	// An unspent designated coin cannot be swapped either.
	dA2 := m.withdraw(t, w, coin.Designation(A), 4)[0]
	_, err = w.ReserveSwap(ctx, []byte("s2"), d("s2"), [][32]byte{dA2.Pub})
	require.ErrorIs(t, err, ErrUnavailable)
	require.Equal(t, Unspent, stateOf(t, w, dA2.Pub).State)

	// The mint refuses the swap: the coins are bound to the mint, and
	// only the mint may take them.
	require.NoError(t, w.Settle(ctx, []byte("s1"), false))
	require.Equal(t, Bound, stateOf(t, w, bearer2).State)
	require.Equal(t, Bound, stateOf(t, w, bB.Pub).State)
	_, err = w.Reserve(ctx, C, []byte("r7"), d("r7"), 2)
	require.ErrorIs(t, err, coin.ErrNoExactChange)
	sp, err = w.Reserve(ctx, m.peer, []byte("s3"), d("s3"), 18)
	require.NoError(t, err)
	require.ElementsMatch(t, swap, [][32]byte{sp[0].Pub, sp[1].Pub})
	require.NoError(t, w.Settle(ctx, []byte("s3"), true))

	// Paying the mint, Reserve takes no designated coin: of 8 and A's 4,
	// only the 8 is usable there.
	_, err = w.Reserve(ctx, m.peer, []byte("s4"), d("s4"), 12)
	require.ErrorIs(t, err, ErrInsufficientFunds)
	_, err = w.Reserve(ctx, m.peer, []byte("s4"), d("s4"), 4)
	require.ErrorIs(t, err, coin.ErrNoExactChange)
	// A's coin stays usable at A.
	sp, err = w.Reserve(ctx, A, []byte("r8"), d("r8"), 4)
	require.NoError(t, err)
	require.Equal(t, dA2.Pub, sp[0].Pub)
	require.NoError(t, w.Settle(ctx, []byte("r8"), true))

	// B finally refuses r5: its designated coin is bound to B, still not
	// swappable, and usable at B alone.
	require.NoError(t, w.Settle(ctx, []byte("r5"), false))
	info = stateOf(t, w, dB.Pub)
	require.Equal(t, Bound, info.State)
	require.Equal(t, B, info.Server)
	_, err = w.ReserveSwap(ctx, []byte("s5"), d("s5"), [][32]byte{dB.Pub})
	require.ErrorIs(t, err, ErrUnavailable)
	require.Equal(t, Bound, stateOf(t, w, dB.Pub).State)
	_, err = w.Reserve(ctx, m.peer, []byte("s5"), d("s5"), 2)
	require.ErrorIs(t, err, coin.ErrNoExactChange)
	_, err = w.Reserve(ctx, C, []byte("r9"), d("r9"), 2)
	require.ErrorIs(t, err, coin.ErrNoExactChange)
	sp, err = w.Reserve(ctx, B, []byte("r10"), d("r10"), 2)
	require.NoError(t, err)
	require.Equal(t, dB.Pub, sp[0].Pub)
	spendsPay(t, m, sp, B, d("r10"), 2)
	require.NoError(t, w.Settle(ctx, []byte("r10"), true))

	bal, _ = w.Balance(ctx)
	require.Equal(t, Balance{Unspent: 8}, bal)

	// Bad arguments.
	_, err = w.Reserve(ctx, nil, []byte("x"), d("x"), 1)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = w.Reserve(ctx, A, nil, d("x"), 1)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = w.Reserve(ctx, A, []byte("x"), d("x"), 0)
	require.ErrorIs(t, err, ErrInvalid)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = w.Reserve(cctx, A, []byte("x"), d("x"), 8)
	require.ErrorIs(t, err, context.Canceled)
}

// TestReservedStateSurvivesReopen checks that reservations and their
// coins' states are on disk.
func TestReservedStateSurvivesReopen(t *testing.T) {
	m := newTestMint(t, 1)
	clk := &clock{t: t0}
	path := filepath.Join(t.TempDir(), "w.db")
	w := openTest(t, m, path, clk)
	m.withdraw(t, w, [32]byte{}, 4, 2)
	sp, err := w.Reserve(ctx, []byte("S"), []byte("r"), [32]byte{1}, 4)
	require.NoError(t, err)
	require.NoError(t, w.Close())

	w = openTest(t, m, path, clk)
	again, err := w.Reserve(ctx, []byte("S"), []byte("r"), [32]byte{1}, 4)
	require.NoError(t, err)
	require.Equal(t, sp, again)
	_, err = w.Reserve(ctx, []byte("S"), []byte("r2"), [32]byte{2}, 4)
	require.ErrorIs(t, err, ErrInsufficientFunds)
	require.NoError(t, w.Settle(ctx, []byte("r"), true))
	bal, _ := w.Balance(ctx)
	require.Equal(t, Balance{Unspent: 2}, bal)
}

func TestExactSelection(t *testing.T) {
	w, m, clk := newTest(t)
	m.withdraw(t, w, [32]byte{}, 16, 4, 4, 1, 1)
	server := []byte("S")
	for i, tc := range []struct {
		price uint64
		want  []uint64
		err   error
	}{
		{price: 9, want: []uint64{4, 4, 1}},
		{price: 2, err: coin.ErrNoExactChange}, // only 16 and 1 left
		{price: 17, want: []uint64{16, 1}},
		{price: 1, err: ErrInsufficientFunds},
	} {
		id := []byte{byte(i)}
		sp, err := w.Reserve(ctx, server, id, [32]byte{byte(i)}, tc.price)
		if tc.err != nil {
			require.ErrorIs(t, err, tc.err, "price %d", tc.price)
			continue
		}
		require.NoError(t, err, "price %d", tc.price)
		require.Equal(t, tc.want, amountsOf(sp), "price %d", tc.price)
		spendsPay(t, m, sp, server, [32]byte{byte(i)}, tc.price)
		require.NoError(t, w.Settle(ctx, id, true))
	}

	// Coins past their keyset's spend window do not pay servers, but may
	// still be swapped until the deposit window ends.
	m.withdraw(t, w, [32]byte{}, 2)
	clk.advance(49 * time.Hour)
	_, err := w.Reserve(ctx, server, []byte("late"), [32]byte{}, 2)
	require.ErrorIs(t, err, ErrInsufficientFunds)
	cs, _ := w.Coins(ctx)
	var last [32]byte
	for _, c := range cs {
		if c.State == Unspent {
			last = c.Coin.Pub
		}
	}
	_, err = w.ReserveSwap(ctx, []byte("late"), [32]byte{}, [][32]byte{last})
	require.NoError(t, err)
}

func TestTooManyCoins(t *testing.T) {
	w, m, _ := newTest(t)
	amounts := make([]uint64, MaxSpends+1)
	for i := range amounts {
		amounts[i] = 1
	}
	m.withdraw(t, w, [32]byte{}, amounts...)
	_, err := w.Reserve(ctx, []byte("S"), []byte("r"), [32]byte{}, MaxSpends+1)
	require.ErrorIs(t, err, ErrTooManyCoins)
	sp, err := w.Reserve(ctx, []byte("S"), []byte("r"), [32]byte{}, MaxSpends)
	require.NoError(t, err)
	require.Len(t, sp, MaxSpends)
}

// TestConcurrentReserve reserves from many goroutines at once and checks
// that no coin is handed out twice and that the books balance.
func TestConcurrentReserve(t *testing.T) {
	w, m, _ := newTest(t)
	amounts := []uint64{}
	for range 6 {
		amounts = append(amounts, 1, 2, 4, 8)
	}
	m.withdraw(t, w, [32]byte{}, amounts...)
	const workers = 8
	var (
		mu    sync.Mutex
		seen  = map[[32]byte]string{}
		total uint64
		wg    sync.WaitGroup
	)
	for g := range workers {
		wg.Go(func() {
			for i := range 12 {
				id := fmt.Sprintf("g%d-%d", g, i)
				price := uint64(1 + (g*5+i)%15)
				sp, err := w.Reserve(ctx, []byte("S"), []byte(id), sha256.Sum256([]byte(id)), price)
				if errors.Is(err, ErrInsufficientFunds) || errors.Is(err, coin.ErrNoExactChange) {
					continue
				}
				if !assertNoErr(t, err) {
					return
				}
				mu.Lock()
				for _, s := range sp {
					if prev, dup := seen[s.Pub]; dup {
						t.Errorf("coin handed out to %s and %s", prev, id)
					}
					seen[s.Pub] = id
					total += s.Amount
				}
				mu.Unlock()
				if i%2 == 0 {
					assertNoErr(t, w.Settle(ctx, []byte(id), true))
				}
			}
		})
	}
	wg.Wait()
	bal, err := w.Balance(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 6*15, bal.Unspent+total)
	require.Less(t, bal.Unspent, uint64(30), "the workers used most of the money")
	t.Logf("%d of %d reserved, %d left", total, 6*15, bal.Unspent)
}

func assertNoErr(t *testing.T, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}
