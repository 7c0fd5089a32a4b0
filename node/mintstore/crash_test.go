package mintstore

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
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

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// The crash test re-executes the test binary as a child that commits
// issuance rows in a loop, from several goroutines, and prints each row
// once CommitIssue has returned it; the parent kills the child with
// SIGKILL at a random point, reopens the file and checks that every row
// the child printed is stored with the same answer, that the funding
// account was charged exactly the value of the rows stored, and that the
// store is consistent. It does this several times over one file. A killed
// process loses nothing the kernel has accepted, so this tests that a
// commit is durable before CommitIssue returns and that a commit cut
// short leaves the file consistent; it does not test what a power failure
// does to the disk.

const crashEnv = "MINTSTORE_CRASH_CHILD_DB"

var crashAccount = [32]byte{'c', 'r', 'a', 's', 'h'}

// crashKey returns denomination key i of the crash test, worth 2^i.
func crashKey(i int) ([32]byte, uint64) { return [32]byte{'k', byte(i)}, 1 << i }

// crashChild runs the child when the environment asks for it, and never
// returns then.
func crashChild() bool {
	path := os.Getenv(crashEnv)
	if path == "" {
		return false
	}
	var mu sync.Mutex
	say := func(line string) {
		mu.Lock()
		os.Stdout.WriteString(line) // unbuffered: one write(2) per line
		mu.Unlock()
	}
	s, err := Open(path, WithLockTimeout(10*time.Second))
	if err != nil {
		say(fmt.Sprintf("error open: %v\n", err))
		os.Exit(2)
	}
	ctx := context.Background()
	if err := s.OpenFunding(ctx, crashAccount, "msat", 1<<62); err != nil {
		say(fmt.Sprintf("error funding: %v\n", err))
		os.Exit(2)
	}
	for range 8 {
		go func() {
			var done [][]protocol.IssueRow // batches committed, for retries
			for {
				switch n := rand.IntN(10); {
				case n < 7 || len(done) == 0: // a new withdrawal
					rows := make([]protocol.IssueRow, 1+rand.IntN(16))
					for i := range rows {
						key, amount := crashKey(rand.IntN(4))
						var r coin.Row
						r.Key = key
						crand.Read(r.Nonce[:])
						crand.Read(r.ChallengeHash[:])
						crand.Read(r.S[:])
						r.B = byte(rand.IntN(2))
						rows[i] = protocol.IssueRow{Row: r, KeysetID: [32]byte{'K'}, Amount: amount}
					}
					if _, err := s.CommitIssue(ctx, crashAccount, "msat", rows); err != nil {
						say(fmt.Sprintf("error commit: %v\n", err))
						continue
					}
					var b strings.Builder
					for _, r := range rows {
						fmt.Fprintf(&b, "row %x\n", encodeCrashRow(&r))
					}
					say(b.String())
					if len(done) < 64 {
						done = append(done, rows)
					}
				case n < 9: // a retry: answered from the stored rows
					rows := done[rand.IntN(len(done))]
					got, err := s.CommitIssue(ctx, crashAccount, "msat", rows)
					if err != nil {
						say(fmt.Sprintf("error retry: %v\n", err))
						continue
					}
					for i := range rows {
						if got[i] != rows[i].Row {
							say("error retry answered with another row\n")
						}
					}
				default: // other challenges for a stored nonce: refused
					r := done[rand.IntN(len(done))][0]
					r.ChallengeHash[0] ^= 1
					r.S[0] ^= 1
					if _, err := s.CommitIssue(ctx, crashAccount, "msat", []protocol.IssueRow{r}); !errors.Is(err, protocol.ErrNonceReused) {
						say(fmt.Sprintf("error other challenges: %v\n", err))
					}
				}
			}
		}()
	}
	select {}
}

// encodeCrashRow is key ‖ nonce ‖ keyset ID ‖ challenge hash ‖ b ‖ s ‖
// amount.
func encodeCrashRow(r *protocol.IssueRow) []byte {
	b := append(rowKey(r.Key, r.Nonce), r.KeysetID[:]...)
	b = append(b, r.ChallengeHash[:]...)
	b = append(b, r.B)
	b = append(b, r.S[:]...)
	return binary.BigEndian.AppendUint64(b, r.Amount)
}

func decodeCrashRow(t *testing.T, h string) protocol.IssueRow {
	b, err := hex.DecodeString(h)
	require.NoError(t, err)
	require.Len(t, b, 64+32+32+1+32+8)
	var r protocol.IssueRow
	r.Key, r.Nonce = [32]byte(b[:32]), [32]byte(b[32:64])
	r.KeysetID = [32]byte(b[64:96])
	r.ChallengeHash = [32]byte(b[96:128])
	r.B = b[128]
	r.S = [32]byte(b[129:161])
	r.Amount = binary.BigEndian.Uint64(b[161:])
	return r
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "mint.db")
	printed := map[[32]byte]protocol.IssueRow{} // nonce → row
	for round := range 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })

		killAt := 1 + rand.IntN(1500)
		n := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			h, ok := strings.CutPrefix(line, "row ")
			if !ok {
				t.Errorf("child: %s", line)
				continue
			}
			r := decodeCrashRow(t, h)
			printed[r.Nonce] = r
			if n++; n == killAt {
				require.NoError(t, cmd.Process.Kill()) // SIGKILL
			}
		}
		timer.Stop()
		require.NoError(t, sc.Err())
		require.Error(t, cmd.Wait(), "the child ends only when killed")

		s, err := Open(path)
		require.NoError(t, err)
		checkCrashStore(t, s, printed)
		t.Logf("round %d: killed after %d rows printed (%d read); %d printed in all", round, killAt, n, len(printed))
		require.NoError(t, s.Close())
	}
}

// checkCrashStore checks that every printed row is stored as printed and
// that the funding was charged exactly the value of the rows stored.
func checkCrashStore(t *testing.T, s *Store, printed map[[32]byte]protocol.IssueRow) {
	t.Helper()
	ctx := context.Background()
	nonces := make([][32]byte, 0, len(printed))
	for n := range printed {
		nonces = append(nonces, n)
	}
	for len(nonces) > 0 {
		batch := nonces[:min(len(nonces), 256)]
		nonces = nonces[len(batch):]
		rows, err := s.Rows(ctx, batch, 1024)
		require.NoError(t, err)
		require.Len(t, rows, len(batch), "printed rows lost")
		for _, r := range rows {
			require.Equal(t, printed[r.Nonce], r, "a printed row changed")
		}
	}
	var stored, value uint64
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRows).ForEach(func(k, v []byte) error {
			r, _, err := decodeRow(k, v)
			stored++
			value += r.Amount
			return err
		})
	}))
	require.GreaterOrEqual(t, stored, uint64(len(printed)))
	a, err := s.FundingAccount(ctx, crashAccount)
	require.NoError(t, err)
	require.Equal(t, value, a.Value-a.Remaining, "charged total != value of the stored rows")
	require.NoError(t, s.Check(ctx))
}
