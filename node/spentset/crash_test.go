package spentset

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
)

// The crash test re-executes the test binary as a child that records coins
// in a loop and prints each coin's public key once Record has returned;
// the parent kills it with SIGKILL at a random point, reopens the store and
// checks that every coin the child printed is there and that the store is
// consistent. A killed process loses nothing the kernel has accepted, so
// this tests that a write is committed before Record returns and that a
// commit cut short leaves a consistent file; it does not test what a power
// failure does to the disk.

const crashEnv = "SPENTSET_CRASH_CHILD_DB"

// crashChild runs the child when the environment asks for it, and never
// returns then.
func crashChild() bool {
	path := os.Getenv(crashEnv)
	if path == "" {
		return false
	}
	s, err := Open(path)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(os.Stdout, format, args...) // unbuffered: one write(2)
		mu.Unlock()
	}
	ctx := context.Background()
	for range 16 {
		go func() {
			for {
				sp := make([]*coin.Spend, 1+rand.IntN(3))
				for i := range sp {
					sp[i] = newSpend(rand.Uint64(), uint8(rand.IntN(10)), rand.IntN(2) == 0)
				}
				var id [16]byte
				crand.Read(id[:])
				d := digestOf(hex.EncodeToString(id[:]))
				if _, err := s.Record(ctx, id, d, sp, 1); err != nil {
					say("error %v\n", err)
					continue
				}
				for _, x := range sp {
					say("ack %x\n", x.Pub)
				}
				if rand.IntN(2) == 0 {
					if err := s.Answer(ctx, id, d, id[:]); err != nil {
						say("error %v\n", err)
					}
				}
			}
		}()
	}
	go func() { // a depositor
		states := []CoinState{CoinCredited, CoinAlreadyCredited, CoinDoubleSpent, CoinExpired}
		for {
			deps, err := s.PendingDeposits(ctx, 1+rand.IntN(20))
			if err != nil {
				say("error %v\n", err)
				continue
			}
			out := make([]Outcome, len(deps))
			for i, d := range deps {
				out[i] = Outcome{d.Spend.Pub, states[rand.IntN(len(states))]}
			}
			if _, err := s.Acknowledge(ctx, out); err != nil {
				say("error %v\n", err)
			}
		}
	}()
	select {}
}

func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "spent.db")
	acked := map[[32]byte]bool{}
	rounds := 4
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())

		killAt := 50 + rand.IntN(1500)
		n := 0
		sc := bufio.NewScanner(out)
		killed := false
		timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
		for sc.Scan() {
			line := sc.Text()
			if hexPub, ok := strings.CutPrefix(line, "ack "); ok {
				b, err := hex.DecodeString(hexPub)
				require.NoError(t, err)
				require.Len(t, b, 32)
				acked[[32]byte(b)] = true
				n++
			} else {
				t.Errorf("child: %s", line)
			}
			if n >= killAt && !killed {
				require.NoError(t, cmd.Process.Kill()) // SIGKILL
				killed = true
			}
		}
		timer.Stop()
		require.NoError(t, sc.Err())
		err = cmd.Wait()
		require.Error(t, err, "the child ends only when killed")
		t.Logf("round %d: killed after %d acks (%d read in all)", round, killAt, n)

		s, err := Open(path) // runs Check: counters equal the sums
		require.NoError(t, err)
		pubs := make([][32]byte, 0, len(acked))
		for p := range acked {
			pubs = append(pubs, p)
		}
		info, err := s.Coins(context.Background(), pubs)
		require.NoError(t, err)
		for _, in := range info {
			assert.NotEqual(t, CoinUnknown, in.State, "acknowledged coin %x lost", in.Pub)
		}
		// Recount the pending coins through the public API: the counters
		// must equal the sums.
		st := stats(t, s)
		deps, err := s.PendingDeposits(context.Background(), 1<<30)
		require.NoError(t, err)
		var value, bearer uint64
		for _, d := range deps {
			value += d.Spend.Amount
			if d.Spend.Designated == ([32]byte{}) {
				bearer += d.Spend.Amount
			}
		}
		assert.Equal(t, uint64(len(deps)), st.Pending)
		assert.Equal(t, value, st.PendingValue)
		assert.Equal(t, bearer, st.PendingBearer)
		assert.GreaterOrEqual(t, st.Coins, uint64(len(acked)))
		t.Logf("round %d: %d coins stored, %d acknowledged to the parent, %d pending", round, st.Coins, len(acked), st.Pending)
		require.NoError(t, s.Close())
	}
}
