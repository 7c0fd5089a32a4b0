package mintstore

// Attacks on the mint's durable store, by an outside reviewer. Every test
// states a defence and asserts that it holds: a test that fails is an
// attack that worked.

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// TestAttackDepositRace: sixteen servers deposit the same coin at once,
// each for its own request: exactly one is credited, the others get the
// winner's record as evidence, and the balances sum to the coin's value.
//
// HOLDS.
func TestAttackDepositRace(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	const n = 16
	outs := make([][]protocol.DepositOutcome, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		srv := peer.ID(fmt.Sprintf("server %d", i))
		wg.Go(func() {
			<-start
			outs[i], errs[i] = s.CreditDeposits(ctx, srv, []protocol.SpendRecord{spend(1, srv, byte(i), 8)})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i := range n {
		require.NoError(t, errs[i])
		if outs[i][0].Status == pb.DepositStatus_DEPOSIT_CREDITED {
			require.Equal(t, -1, winner, "credited twice")
			winner = i
		}
	}
	require.NotEqual(t, -1, winner)
	var total uint64
	for i := range n {
		srv := peer.ID(fmt.Sprintf("server %d", i))
		if i != winner {
			require.Equal(t, pb.DepositStatus_DEPOSIT_DOUBLE_SPENT, outs[i][0].Status)
			require.Equal(t, peer.ID(fmt.Sprintf("server %d", winner)), outs[i][0].Conflict.Server)
		}
		bal, err := s.Balance(ctx, srv)
		require.NoError(t, err)
		for _, b := range bal {
			total += b.Amount
		}
	}
	require.Equal(t, uint64(8), total)
	require.NoError(t, s.Check(ctx))
}

// TestAttackSwapDepositRace: one coin as the input of eight swaps (under
// their own request IDs, each with its own output) and deposited by a
// server, all at once: exactly one takes it; the refused swaps insert no
// row, so their nonces stay free.
//
// HOLDS.
func TestAttackSwapDepositRace(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	mint, srv := peer.ID("mint"), peer.ID("server")
	const n = 8
	swapOuts := make([]protocol.SwapOutcome, n)
	swapErrs := make([]error, n)
	var depOut []protocol.DepositOutcome
	var depErr error
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		c := protocol.SwapCommit{RequestID: [16]byte{byte(i), 's'}, Digest: [32]byte{byte(i)},
			Inputs: []protocol.SpendRecord{spend(7, mint, byte(i), 4)}, Outputs: []protocol.IssueRow{row(1, byte(100+i), 1, 4)}}
		wg.Go(func() {
			<-start
			swapOuts[i], swapErrs[i] = s.CommitSwap(ctx, c)
		})
	}
	wg.Go(func() {
		<-start
		depOut, depErr = s.CreditDeposits(ctx, srv, []protocol.SpendRecord{spend(7, srv, 99, 4)})
	})
	close(start)
	wg.Wait()
	require.NoError(t, depErr)
	taken := 0
	if depOut[0].Status == pb.DepositStatus_DEPOSIT_CREDITED {
		taken++
	}
	var nonces [][32]byte
	for i := range n {
		require.NoError(t, swapErrs[i])
		if swapOuts[i].Rows != nil {
			taken++
			continue
		}
		require.NotNil(t, swapOuts[i].Conflicts[0])
		nonces = append(nonces, [32]byte{byte(100 + i)})
	}
	require.Equal(t, 1, taken, "one coin taken %d times", taken)
	rows, err := s.Rows(ctx, nonces, 1024)
	require.NoError(t, err)
	require.Empty(t, rows, "a refused swap inserted its outputs")
	require.NoError(t, s.Check(ctx))
}

// TestAttackPayoutOverdraw: sixteen payouts at once against a balance
// that covers three never take more than the balance; refusing one payout
// sixteen times at once credits it back once.
//
// HOLDS.
func TestAttackPayoutOverdraw(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	srv := peer.ID("server")
	_, err := s.CreditDeposits(ctx, srv, []protocol.SpendRecord{spend(1, srv, 1, 2), spend(2, srv, 1, 8)})
	require.NoError(t, err)
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.BeginPayout(ctx, protocol.PayoutOrder{Server: srv, RequestID: [16]byte{byte(i)}, Digest: [32]byte{byte(i)}, Unit: "msat", Amount: 3})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			require.ErrorIs(t, err, protocol.ErrInsufficientBalance)
		}
	}
	require.Equal(t, 3, ok)
	bal, err := s.Balance(ctx, srv)
	require.NoError(t, err)
	require.Equal(t, uint64(1), bal[0].Amount)

	pending, err := s.PendingPayouts(ctx)
	require.NoError(t, err)
	victim := pending[0]
	for range n {
		wg.Go(func() {
			_, err := s.FinishPayout(ctx, srv, victim.RequestID, nil, true)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	bal, err = s.Balance(ctx, srv)
	require.NoError(t, err)
	require.Equal(t, uint64(4), bal[0].Amount, "a refused payout credited back more than once")
	// And a refused payout's retry is not a new debit.
	rec, err := s.BeginPayout(ctx, victim.PayoutOrder)
	require.NoError(t, err)
	require.Equal(t, protocol.PayoutRefused, rec.State)
	bal, _ = s.Balance(ctx, srv)
	require.Equal(t, uint64(4), bal[0].Amount)
	require.NoError(t, s.Check(ctx))
}

// TestAttackRecoupRace: one coin of a revoked keyset recouped eight times
// at once into eight accounts is credited once.
//
// HOLDS.
func TestAttackRecoupRace(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	c := &clock{now: t0}
	k := openKeys(t, s, c)
	ks, err := k.Generate(ctx, testPolicy, t0)
	require.NoError(t, err)
	sec := secretOf(t, s, ks.ID())
	is := newIssuer(t, s)
	coin := is.withdraw(sec, t0, 4, false)
	require.NoError(t, k.Revoke(ctx, ks.ID()))
	const n = 8
	outs := make([][]protocol.DepositOutcome, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		claim := coin.recoup(t, peer.ID("mint"), sha256.Sum256([]byte{byte(i)}))
		wg.Go(func() { outs[i], errs[i] = s.Recoup(ctx, []RecoupCoin{claim}, [32]byte{'r', byte(i)}) })
	}
	wg.Wait()
	credited := 0
	var value uint64
	for i := range n {
		require.NoError(t, errs[i])
		if outs[i][0].Status == pb.DepositStatus_DEPOSIT_CREDITED {
			credited++
		}
		if a, err := s.FundingAccount(ctx, [32]byte{'r', byte(i)}); err == nil {
			value += a.Value
		}
	}
	require.Equal(t, 1, credited)
	require.Equal(t, uint64(4), value)
}

// TestAttackKeysFormatsIdentity: the mint's identity key signs every
// keyset; whoever holds it can publish keysets that clients accept. coin's
// KeysetSecret and Signer redact themselves in fmt; Keys holds the
// identity as a plain ed25519.PrivateKey, so logging a *Keys prints it.
//
// Defence claimed: secrets are not printed. FAILS (low severity).
func TestAttackKeysFormatsIdentity(t *testing.T) {
	s, _ := openTemp(t)
	k := openKeys(t, s, &clock{now: t0})
	seed := testIdentity.Seed()
	for _, verb := range []string{"%v", "%+v"} {
		out := fmt.Sprintf(verb, k)
		if strings.Contains(out, strings.Trim(fmt.Sprint(seed[:8]), "[]")) {
			t.Errorf("%s of *Keys prints the mint's identity key: %.100s...", verb, out)
		}
	}
}

// The conservation crash test: a child process credits deposits and makes
// and settles payouts for one server from several goroutines; the parent
// kills it with SIGKILL at random points and checks, each time, that what
// the server was credited equals its balance plus what it was paid out
// (payouts not refused), and that Check passes. Check itself does not
// compare balances with credits and payouts.

const atkChildEnv = "MINTSTORE_ATTACK_CHILD_DB"

var atkServer = peer.ID("conserving server")

func init() {
	path := os.Getenv(atkChildEnv)
	if path == "" {
		return
	}
	s, err := Open(path, WithLockTimeout(10*time.Second))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	ctx := context.Background()
	for range 6 {
		go func() {
			for {
				switch rand.IntN(4) {
				case 0, 1:
					var recs []protocol.SpendRecord
					for range 1 + rand.IntN(8) {
						r := spend(0, atkServer, 1, uint64(1)<<rand.IntN(4))
						crand.Read(r.Pub[:])
						recs = append(recs, r)
					}
					if _, err := s.CreditDeposits(ctx, atkServer, recs); err != nil {
						fmt.Println("error", err)
					}
				case 2:
					var id [16]byte
					crand.Read(id[:])
					_, err := s.BeginPayout(ctx, protocol.PayoutOrder{Server: atkServer, RequestID: id, Unit: "msat", Amount: 1 + rand.Uint64N(6)})
					if err != nil && !errors.Is(err, protocol.ErrInsufficientBalance) {
						fmt.Println("error", err)
					}
				default:
					ps, err := s.PendingPayouts(ctx)
					if err != nil || len(ps) == 0 {
						continue
					}
					p := ps[rand.IntN(len(ps))]
					if _, err := s.FinishPayout(ctx, p.Server, p.RequestID, []byte("receipt"), rand.IntN(2) == 0); err != nil {
						fmt.Println("error", err)
					}
				}
			}
		}()
	}
	time.Sleep(time.Minute)
	os.Exit(0)
}

func TestAttackCrashConservation(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "mint.db")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), atkChildEnv+"="+path)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		lines := make(chan string, 16)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		time.Sleep(time.Duration(100+rand.IntN(300)) * time.Millisecond)
		require.NoError(t, cmd.Process.Kill())
		for l := range lines {
			t.Errorf("child: %s", l)
		}
		cmd.Wait()

		s, err := Open(path)
		require.NoError(t, err)
		require.NoError(t, s.Check(context.Background()))
		var credited, paid uint64
		var coins, payouts int
		require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketSpent).ForEach(func(k, v []byte) error {
				r, err := decodeSpent(k, v)
				if err == nil && r.Server == atkServer {
					credited += r.Amount
					coins++
				}
				return err
			}); err != nil {
				return err
			}
			return tx.Bucket(bucketPayouts).ForEach(func(k, v []byte) error {
				r, err := decodePayout(k, v)
				if err == nil && r.Server == atkServer && r.State != protocol.PayoutRefused {
					paid += r.Amount
					payouts++
				}
				return err
			})
		}))
		bal, err := s.Balance(context.Background(), atkServer)
		require.NoError(t, err)
		var balance uint64
		if len(bal) > 0 {
			balance = bal[0].Amount
		}
		t.Logf("round %d: %d coins credited (%d), %d payouts (%d), balance %d", round, coins, credited, payouts, paid, balance)
		require.Equal(t, credited, balance+paid, "credits != balance + payouts")
		require.NoError(t, s.Close())
	}
}
