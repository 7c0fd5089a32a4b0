package mintstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/internal/crashpoint"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// Tests of the restore guard (guard.go) and of backups (backup.go), on
// real bbolt files: a database put back from a copy, whatever made the
// copy, retires the keysets it holds, so that no nonce answered after the
// copy is answered again under other challenges.

// guardMint is a mint's store and keys over one file, with a clock.
type guardMint struct {
	t     *testing.T
	path  string
	clock *clock
	s     *Store
	k     *Keys
	acct  [32]byte
}

func newGuardMint(t *testing.T) *guardMint {
	g := &guardMint{t: t, path: filepath.Join(t.TempDir(), "mint.db"), clock: &clock{now: t0}, acct: [32]byte{'g'}}
	g.open()
	require.NoError(t, g.s.OpenFunding(context.Background(), g.acct, "msat", 1<<40))
	return g
}

// open opens the store and its keys and rotates, as a mint's start does.
func (g *guardMint) open(opts ...Option) GuardReport {
	t := g.t
	t.Helper()
	s, err := Open(g.path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	g.s = s
	g.k, err = OpenKeys(context.Background(), s, testIdentity, WithClock(g.clock.Now)) // fresh keys each time
	require.NoError(t, err)
	_, err = g.k.Rotate(context.Background(), testPolicy)
	require.NoError(t, err)
	return s.Guard()
}

func (g *guardMint) close() { require.NoError(g.t, g.s.Close()) }

// crash leaves the file as a killed process would: no last advance.
func (g *guardMint) crash() {
	gd := g.s.guard
	gd.stopOnce.Do(func() {
		if gd.stop != nil {
			close(gd.stop)
			<-gd.done
		}
	})
	require.NoError(g.t, g.s.db.Close())
}

// issuing returns the newest keyset open for issuance that is not
// retired: the one a wallet picks.
func (g *guardMint) issuing() *coin.Keyset {
	ps := g.k.Keysets()
	for i := len(ps) - 1; i >= 0; i-- {
		ks := ps[i].Keyset
		if !ps[i].Revoked && ks.Open(coin.WindowIssue, g.clock.Now()) {
			return ks
		}
	}
	g.t.Fatal("no keyset issues")
	return nil
}

// scalar returns a canonical scalar derived from label.
func scalar(label string) [32]byte {
	c := sha256.Sum256([]byte(label))
	c[31] &= 0x0f
	return c
}

// commit signs nonce under ks's 1-unit key with the challenges of label
// and commits the row, as WithdrawFinish does.
func (g *guardMint) commit(ks *coin.Keyset, nonce [32]byte, label string) (coin.Row, error) {
	sg, err := secretOf(g.t, g.s, ks.ID()).Signer(1)
	require.NoError(g.t, err)
	row, err := sg.Finish(g.clock.Now(), nonce, scalar(label+"0"), scalar(label+"1"))
	require.NoError(g.t, err)
	got, err := g.s.CommitIssue(context.Background(), g.acct, "msat", []protocol.IssueRow{{Row: row, KeysetID: ks.ID(), Amount: 1}})
	if err != nil {
		return coin.Row{}, err
	}
	return got[0], nil
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, b, 0o600))
}

// liveCopy copies the open database as a filesystem snapshot would: a
// consistent state, without a backup marker.
func (g *guardMint) liveCopy(dst string) {
	require.NoError(g.t, g.s.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(dst, 0o600) }))
}

func readGuard(t testing.TB, path string) guardFile {
	t.Helper()
	gf, err := readGuardFile(path + GuardSuffix)
	require.NoError(t, err)
	return gf
}

func TestGuardNewAndReopen(t *testing.T) {
	g := newGuardMint(t)
	r := g.s.Guard()
	assert.False(t, r.Restored)
	assert.Equal(t, uint64(1), r.Epoch)
	assert.Equal(t, uint64(1), readGuard(t, g.path).Epoch)
	fi, err := os.Stat(g.path + GuardSuffix)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	ks := g.issuing()
	_, err = g.commit(ks, [32]byte{1}, "a")
	require.NoError(t, err)
	g.close() // rows were inserted: the epoch advances at Close
	assert.Equal(t, uint64(2), readGuard(t, g.path).Epoch)

	r = g.open()
	assert.False(t, r.Restored, r.Reason)
	assert.Equal(t, uint64(3), r.Epoch)
	assert.False(t, g.k.Retired(ks.ID()))
	assert.Empty(t, g.k.RetiredKeysets())
	g.close() // no rows: the epoch stays
	assert.Equal(t, uint64(3), readGuard(t, g.path).Epoch)
	r = g.open()
	assert.False(t, r.Restored, r.Reason)
	require.NoError(t, g.s.Check(context.Background()))
}

// TestGuardBackupRestored: a backup taken, more rows issued after it, the
// backup put back over the live file, the store reopened. The keyset open
// at backup time is retired: a nonce answered after the backup is not
// answered again (under other challenges or the same), while the rows the
// backup holds are still answered and restored; a fresh keyset issues.
func TestGuardBackupRestored(t *testing.T) {
	ctx := context.Background()
	g := newGuardMint(t)
	ks1 := g.issuing()
	before, err := g.commit(ks1, [32]byte{'A'}, "a")
	require.NoError(t, err)

	bk := filepath.Join(t.TempDir(), "backup.db")
	info, err := g.s.BackupFile(bk)
	require.NoError(t, err)
	assert.Equal(t, [][32]byte{ks1.ID()}, info.Issuing)
	fi, err := os.Stat(bk)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	read, err := ReadBackupInfo(bk)
	require.NoError(t, err)
	assert.Equal(t, info.Issuing, read.Issuing)
	assert.Equal(t, info.Time.Unix(), read.Time.Unix())

	after, err := g.commit(ks1, [32]byte{'B'}, "b") // answered after the backup
	require.NoError(t, err)
	g.close()
	_, err = ReadBackupInfo(g.path)
	assert.ErrorIs(t, err, ErrNotBackup, "the live file never carries the marker")

	copyFile(t, bk, g.path)
	g.clock.Set(t0.Add(time.Minute))
	r := g.open()
	assert.True(t, r.Restored)
	assert.Contains(t, r.Reason, "backup taken at")
	assert.Equal(t, [][32]byte{ks1.ID()}, r.Retired)
	assert.Equal(t, info.Time.Unix(), r.BackupTime.Unix())
	assert.True(t, g.k.Retired(ks1.ID()))

	// The keyset stays published, unrevoked: its coins are good.
	ps := g.k.Keysets()
	require.Len(t, ps, 2)
	assert.Equal(t, ks1.ID(), ps[0].Keyset.ID())
	assert.False(t, ps[0].Revoked)
	ks2 := g.issuing()
	assert.NotEqual(t, ks1.ID(), ks2.ID(), "a fresh keyset is the newest open one")
	assert.Greater(t, ks2.NotBefore, ks1.NotBefore)

	// The nonce answered after the backup: no second answer, whatever the
	// challenges.
	_, err = g.commit(ks1, [32]byte{'B'}, "other")
	assert.ErrorIs(t, err, ErrKeysetRetired)
	assert.Equal(t, pb.Code_EXPIRED_KEYSET, protocol.CodeOf(err))
	_, err = g.commit(ks1, [32]byte{'B'}, "b")
	assert.ErrorIs(t, err, ErrKeysetRetired)
	_ = after
	// A nonce never seen: no new row of the retired keyset.
	_, err = g.commit(ks1, [32]byte{'C'}, "c")
	assert.ErrorIs(t, err, ErrKeysetRetired)
	// The row the backup holds: answered from the store, and restored.
	got, err := g.commit(ks1, [32]byte{'A'}, "a")
	require.NoError(t, err)
	assert.Equal(t, before, got)
	_, err = g.commit(ks1, [32]byte{'A'}, "other")
	assert.ErrorIs(t, err, protocol.ErrNonceReused)
	rows, err := g.s.Rows(ctx, [][32]byte{{'A'}, {'B'}}, 10)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	assert.Equal(t, before, rows[0].Row)
	// Swap outputs of the retired keyset are refused; of the fresh one not.
	out := swapOutput(t, g, ks1, [32]byte{'S'})
	_, err = g.s.CommitSwap(ctx, protocol.SwapCommit{RequestID: [16]byte{1}, Digest: [32]byte{1},
		Inputs: []protocol.SpendRecord{swapInput(ks2, 1)}, Outputs: []protocol.IssueRow{out}})
	assert.ErrorIs(t, err, ErrKeysetRetired)
	out = swapOutput(t, g, ks2, [32]byte{'S'})
	_, err = g.s.CommitSwap(ctx, protocol.SwapCommit{RequestID: [16]byte{1}, Digest: [32]byte{1},
		Inputs: []protocol.SpendRecord{swapInput(ks1, 1)}, Outputs: []protocol.IssueRow{out}})
	require.NoError(t, err, "a coin of the retired keyset is spent as usual")
	// The fresh keyset issues.
	_, err = g.commit(ks2, [32]byte{'D'}, "d")
	require.NoError(t, err)
	require.NoError(t, g.s.Check(ctx))

	// Reopened: nothing more to retire, and the retirement stays.
	g.close()
	r = g.open()
	assert.False(t, r.Restored, r.Reason)
	assert.True(t, g.k.Retired(ks1.ID()))
	assert.False(t, g.k.Retired(ks2.ID()))
	_, err = g.commit(ks1, [32]byte{'B'}, "other")
	assert.ErrorIs(t, err, ErrKeysetRetired)

	// The same backup restored again retires again (the fresh keyset is
	// lost with everything after the backup).
	g.close()
	copyFile(t, bk, g.path)
	r = g.open()
	assert.True(t, r.Restored)
	assert.Equal(t, [][32]byte{ks1.ID()}, r.Retired)
}

// swapInput is a spent-set record of a coin of ks worth amount.
func swapInput(ks *coin.Keyset, amount uint64) protocol.SpendRecord {
	r := spend('i', "server", 1, amount)
	r.KeysetID = ks.ID()
	return r
}

func swapOutput(t *testing.T, g *guardMint, ks *coin.Keyset, nonce [32]byte) protocol.IssueRow {
	sg, err := secretOf(t, g.s, ks.ID()).Signer(1)
	require.NoError(t, err)
	row, err := sg.Finish(g.clock.Now(), nonce, scalar("s0"), scalar("s1"))
	require.NoError(t, err)
	return protocol.IssueRow{Row: row, KeysetID: ks.ID(), Amount: 1}
}

// TestGuardPlainCopy: a copy of the file from an earlier run, made with
// cp and put back: the guard file catches it.
func TestGuardPlainCopy(t *testing.T) {
	g := newGuardMint(t)
	ks1 := g.issuing()
	_, err := g.commit(ks1, [32]byte{'A'}, "a")
	require.NoError(t, err)
	g.close()
	old := filepath.Join(t.TempDir(), "old.db")
	copyFile(t, g.path, old)

	g.open()
	_, err = g.commit(ks1, [32]byte{'B'}, "b")
	require.NoError(t, err)
	g.close()

	copyFile(t, old, g.path)
	g.clock.Set(t0.Add(time.Minute))
	r := g.open()
	assert.True(t, r.Restored)
	assert.Contains(t, r.Reason, "behind its guard file")
	assert.Equal(t, [][32]byte{ks1.ID()}, r.Retired)
	_, err = g.commit(ks1, [32]byte{'B'}, "other")
	assert.ErrorIs(t, err, ErrKeysetRetired)
	_, err = g.commit(g.issuing(), [32]byte{'B'}, "other")
	require.NoError(t, err, "the fresh keyset issues")

	// A copy of the state before that restore is behind too.
	g.close()
	copyFile(t, old, g.path)
	r = g.open()
	assert.True(t, r.Restored)
}

// TestGuardLiveCopy: a copy of the file taken while the store runs (a
// filesystem snapshot), put back later.
func TestGuardLiveCopy(t *testing.T) {
	snap := filepath.Join(t.TempDir(), "snap.db")

	t.Run("after a clean stop", func(t *testing.T) {
		g := newGuardMint(t)
		ks := g.issuing()
		g.liveCopy(snap)
		_, err := g.commit(ks, [32]byte{'B'}, "b")
		require.NoError(t, err)
		g.close() // advances the epoch past the copy
		copyFile(t, snap, g.path)
		r := g.open()
		assert.True(t, r.Restored)
		assert.Equal(t, [][32]byte{ks.ID()}, r.Retired)
	})

	t.Run("after a crash, the epoch advanced since", func(t *testing.T) {
		g := newGuardMint(t)
		ks := g.issuing()
		g.liveCopy(snap)
		_, err := g.commit(ks, [32]byte{'B'}, "b")
		require.NoError(t, err)
		require.NoError(t, g.s.advance()) // the guard interval's tick
		g.crash()
		copyFile(t, snap, g.path)
		r := g.open()
		assert.True(t, r.Restored)
		assert.Equal(t, [][32]byte{ks.ID()}, r.Retired)
	})

	t.Run("nothing inserted after the copy", func(t *testing.T) {
		g := newGuardMint(t)
		ks := g.issuing()
		_, err := g.commit(ks, [32]byte{'A'}, "a")
		require.NoError(t, err)
		require.NoError(t, g.s.advance())
		g.liveCopy(snap)
		g.close()
		copyFile(t, snap, g.path)
		r := g.open()
		assert.False(t, r.Restored, "the copy holds every row: nothing to retire")
	})

	// The limit SPEC.md states: a live copy put back after a crash that
	// came before the epoch advanced past the rows inserted after the
	// copy (less than one guard interval) is not caught.
	t.Run("limit: after a crash within the guard interval", func(t *testing.T) {
		g := newGuardMint(t)
		ks := g.issuing()
		g.liveCopy(snap)
		_, err := g.commit(ks, [32]byte{'B'}, "b")
		require.NoError(t, err)
		g.crash()
		copyFile(t, snap, g.path)
		r := g.open()
		assert.False(t, r.Restored, "documented limit")
	})
}

func TestGuardInterval(t *testing.T) {
	g := &guardMint{t: t, path: filepath.Join(t.TempDir(), "mint.db"), clock: &clock{now: t0}, acct: [32]byte{'g'}}
	g.open(WithGuardInterval(5 * time.Millisecond))
	require.NoError(t, g.s.OpenFunding(context.Background(), g.acct, "msat", 100))
	time.Sleep(30 * time.Millisecond)
	assert.Equal(t, uint64(1), readGuard(t, g.path).Epoch, "no rows, no advance")
	_, err := g.commit(g.issuing(), [32]byte{'A'}, "a")
	require.NoError(t, err)
	dbEpoch := func() uint64 {
		var epoch uint64
		require.NoError(t, g.s.db.View(func(tx *bolt.Tx) error {
			d, err := readDBGuard(tx)
			epoch = d.epoch
			return err
		}))
		return epoch
	}
	// The guard file first, then the database.
	require.Eventually(t, func() bool { return dbEpoch() == 2 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, uint64(2), readGuard(t, g.path).Epoch)
	time.Sleep(30 * time.Millisecond)
	assert.Equal(t, uint64(2), dbEpoch(), "no rows since: no advance")
	g.close()
	assert.Equal(t, uint64(2), readGuard(t, g.path).Epoch)
	r := g.open()
	assert.False(t, r.Restored, r.Reason)
}

// TestGuardMismatch: every way the database and its guard file can
// disagree retires.
func TestGuardMismatch(t *testing.T) {
	for _, c := range []struct {
		name, reason string
		edit         func(t *testing.T, g *guardMint)
	}{
		{"guard file missing", "guard file is missing", func(t *testing.T, g *guardMint) {
			require.NoError(t, os.Remove(g.path+GuardSuffix))
		}},
		{"guard file garbage", "does not parse", func(t *testing.T, g *guardMint) {
			require.NoError(t, os.WriteFile(g.path+GuardSuffix, []byte("{"), 0o600))
		}},
		{"guard file of another database", "another database", func(t *testing.T, g *guardMint) {
			gf := readGuard(t, g.path)
			gf.Instance = "00" + gf.Instance[2:]
			b, _ := json.Marshal(gf)
			require.NoError(t, os.WriteFile(g.path+GuardSuffix, b, 0o600))
		}},
		{"guard file put back from a copy", "ahead of its guard file", func(t *testing.T, g *guardMint) {
			gf := readGuard(t, g.path)
			gf.Epoch--
			b, _ := json.Marshal(gf)
			require.NoError(t, os.WriteFile(g.path+GuardSuffix, b, 0o600))
		}},
		{"database of an earlier version", "no restore guard record", func(t *testing.T, g *guardMint) {
			db, err := bolt.Open(g.path, 0o600, nil)
			require.NoError(t, err)
			require.NoError(t, db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyGuard) }))
			require.NoError(t, db.Close())
			require.NoError(t, os.Remove(g.path+GuardSuffix))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGuardMint(t)
			ks := g.issuing()
			g.close()
			c.edit(t, g)
			r := g.open()
			assert.True(t, r.Restored)
			assert.Contains(t, r.Reason, c.reason)
			assert.Equal(t, [][32]byte{ks.ID()}, r.Retired)
			g.close()
			r = g.open()
			assert.False(t, r.Restored, "in step again: %s", r.Reason)
		})
	}

	t.Run("empty database of an earlier version", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "mint.db")
		db, err := bolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, initLayout(db))
		require.NoError(t, db.Close())
		s, err := Open(path)
		require.NoError(t, err)
		defer s.Close()
		assert.False(t, s.Guard().Restored, "no keysets: nothing could have signed")
	})
}

func TestJudge(t *testing.T) {
	inst := [16]byte{7}
	hexInst := fmt.Sprintf("%x", inst[:])
	for _, c := range []struct {
		d        dbGuard
		g        guardFile
		gErr     error
		restored bool
	}{
		{dbGuard{}, guardFile{}, os.ErrNotExist, false},                                                    // new
		{dbGuard{keysets: 1}, guardFile{}, os.ErrNotExist, true},                                           // earlier version
		{dbGuard{has: true, instance: inst, epoch: 4}, guardFile{Instance: hexInst, Epoch: 4}, nil, false}, // in step
		{dbGuard{has: true, instance: inst, epoch: 3}, guardFile{Instance: hexInst, Epoch: 4}, nil, true},
		{dbGuard{has: true, instance: inst, epoch: 5}, guardFile{Instance: hexInst, Epoch: 4}, nil, true},
		{dbGuard{has: true, instance: inst, epoch: 4}, guardFile{Instance: "00", Epoch: 4}, nil, true},
		{dbGuard{has: true, instance: inst, epoch: 4}, guardFile{}, os.ErrNotExist, true},
		{dbGuard{has: true, instance: inst, epoch: 4}, guardFile{}, errors.New("bad"), true},
		{dbGuard{has: true, instance: inst, epoch: 4, marker: &backupMarker{}}, guardFile{Instance: hexInst, Epoch: 4}, nil, true},
		{dbGuard{marker: &backupMarker{}}, guardFile{}, os.ErrNotExist, true},
	} {
		restored, reason := judge(c.d, c.g, c.gErr)
		assert.Equal(t, c.restored, restored, "%+v %+v %v: %s", c.d, c.g, c.gErr, reason)
		assert.Equal(t, restored, reason != "")
	}
}

func TestBackupOffline(t *testing.T) {
	ctx := context.Background()
	g := newGuardMint(t)
	ks := g.issuing()
	out := filepath.Join(t.TempDir(), "b.db")

	// Never over the store itself.
	_, err := g.s.BackupFile(g.path)
	assert.ErrorIs(t, err, ErrBackupOverStore)
	// An open store is in use.
	_, err = BackupFile(g.path, out, WithLockTimeout(50*time.Millisecond))
	assert.ErrorIs(t, err, ErrInUse)
	// Backup to a writer, from the open store.
	var buf bytes.Buffer
	info, err := g.s.Backup(ctx, &buf)
	require.NoError(t, err)
	assert.Equal(t, [][32]byte{ks.ID()}, info.Issuing)
	require.NoError(t, os.WriteFile(out, buf.Bytes(), 0o600))
	read, err := ReadBackupInfo(out)
	require.NoError(t, err)
	assert.Equal(t, info.Issuing, read.Issuing)
	left, _ := filepath.Glob(g.path + ".backup*")
	assert.Empty(t, left, "temporary copy removed")

	g.close()
	epoch := readGuard(t, g.path).Epoch
	info, err = BackupFile(g.path, out)
	require.NoError(t, err)
	assert.Equal(t, [][32]byte{ks.ID()}, info.Issuing)
	assert.Equal(t, epoch, info.Epoch)
	assert.Equal(t, epoch, readGuard(t, g.path).Epoch, "an offline backup leaves the store alone")
	_, err = ReadBackupInfo(g.path)
	assert.ErrorIs(t, err, ErrNotBackup)
	_, err = BackupFile(filepath.Join(t.TempDir(), "none.db"), out)
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = BackupFile(g.path, filepath.Join(filepath.Dir(g.path), ".", "mint.db"))
	assert.ErrorIs(t, err, ErrBackupOverStore)

	// The backup opens as a store (a restore) and checks out.
	copyFile(t, out, g.path)
	r := g.open()
	assert.True(t, r.Restored)
	require.NoError(t, g.s.Check(ctx))
}

// TestGuardRetiredPruned: Prune keeps a retired keyset's mark with its
// own, and deletes its rows only after its issue window.
func TestGuardRetiredPruned(t *testing.T) {
	ctx := context.Background()
	g := newGuardMint(t)
	ks := g.issuing()
	_, err := g.commit(ks, [32]byte{'A'}, "a")
	require.NoError(t, err)
	bk := filepath.Join(t.TempDir(), "b.db")
	_, err = g.s.BackupFile(bk)
	require.NoError(t, err)
	g.close()
	copyFile(t, bk, g.path)
	g.open()
	st, err := g.k.Prune(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.Rows, "inside the issue window")
	g.clock.Set(time.Unix(ks.IssueUntil, 0))
	st, err = g.k.Prune(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), st.Rows)
	id := ks.ID()
	require.NoError(t, g.s.db.View(func(tx *bolt.Tx) error {
		assert.Equal(t, []byte{closedIssue | closedRetired}, tx.Bucket(bucketClosed).Get(id[:]))
		return nil
	}))
	require.NoError(t, g.s.Check(ctx))
}

// The crash test of retire-on-open: a child process opens a restored
// database and is killed at a point of the guard's work; the parent then
// opens it and finds the keysets retired.

const guardChildEnv = "MINTSTORE_GUARD_CHILD_DB"

// guardChild runs the child when the environment asks for it, and never
// returns then.
func guardChild() bool {
	path := os.Getenv(guardChildEnv)
	if path == "" {
		return false
	}
	s, err := Open(path, WithLockTimeout(10*time.Second))
	if err != nil {
		fmt.Printf("error open: %v\n", err)
		os.Exit(2)
	}
	s.Close()
	fmt.Println("opened")
	os.Exit(0)
	return true
}

// openInChild opens path in a child process killed at crash point point.
func openInChild(t *testing.T, path, point string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), guardChildEnv+"="+path, crashpoint.EnvVar+"="+point)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "child output: %s", out)
	ws, ok := ee.Sys().(syscall.WaitStatus)
	require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "child not killed at %s: %v, output: %s", point, err, out)
}

func TestGuardCrashDuringRetire(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	for _, point := range []string{"mint/guard/after-guard-file", "mint/guard/before-commit", "mint/guard/after-commit"} {
		t.Run(point, func(t *testing.T) {
			g := newGuardMint(t)
			ks := g.issuing()
			bk := filepath.Join(t.TempDir(), "b.db")
			_, err := g.s.BackupFile(bk)
			require.NoError(t, err)
			_, err = g.commit(ks, [32]byte{'B'}, "b")
			require.NoError(t, err)
			g.close()
			copyFile(t, bk, g.path)

			openInChild(t, g.path, point)
			g.clock.Set(t0.Add(time.Minute))
			r := g.open()
			if point == "mint/guard/after-commit" {
				assert.False(t, r.Restored, "retired by the child: %s", r.Reason)
			} else {
				assert.True(t, r.Restored)
				assert.Equal(t, [][32]byte{ks.ID()}, r.Retired)
			}
			assert.True(t, g.k.Retired(ks.ID()))
			_, err = g.commit(ks, [32]byte{'B'}, "other")
			assert.ErrorIs(t, err, ErrKeysetRetired)
			_, err = g.commit(g.issuing(), [32]byte{'B'}, "other")
			require.NoError(t, err)
			require.NoError(t, g.s.Check(context.Background()))
		})
	}

	// A crash while a live database enters its next epoch leaves it
	// behind its guard file: the next open retires, needlessly but safely.
	t.Run("normal open", func(t *testing.T) {
		g := newGuardMint(t)
		ks := g.issuing()
		g.close()
		openInChild(t, g.path, "mint/guard/after-guard-file")
		r := g.open()
		assert.True(t, r.Restored)
		assert.Equal(t, [][32]byte{ks.ID()}, r.Retired)
	})
}
