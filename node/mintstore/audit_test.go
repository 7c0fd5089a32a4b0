package mintstore

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// issuer withdraws real coins as a mint and a wallet would, committing
// their rows to a store paid from one account.
type issuer struct {
	t       testing.TB
	s       *Store
	acct    [32]byte
	seed    [32]byte
	counter uint64
}

// issued is a coin with what its wallet and its mint know of it.
type issued struct {
	c   *coin.Coin
	key ed25519.PrivateKey
	row protocol.IssueRow
}

func newIssuer(t testing.TB, s *Store) *issuer {
	return &issuer{t: t, s: s, acct: openFunding(t, s, 'i', 1<<40), seed: [32]byte{'w'}}
}

// withdraw makes a coin of amount under sec at now, and commits its row
// unless forge is set: a forger holds the key but cannot store rows.
func (is *issuer) withdraw(sec *coin.KeysetSecret, now time.Time, amount uint64, forge bool) issued {
	t := is.t
	t.Helper()
	ks := sec.Keyset()
	is.counter++
	w, err := coin.NewWithdrawal(&is.seed, is.counter, ks, amount, [32]byte{})
	require.NoError(t, err)
	sg, err := sec.Signer(amount)
	require.NoError(t, err)
	c0, c1, err := w.Challenges(sg.Begin(w.Nonce()))
	require.NoError(t, err)
	r, err := sg.Finish(now, w.Nonce(), c0, c1)
	require.NoError(t, err)
	row := protocol.IssueRow{Row: r, KeysetID: ks.ID(), Amount: amount}
	if !forge {
		_, err := is.s.CommitIssue(context.Background(), is.acct, ks.Unit, []protocol.IssueRow{row})
		require.NoError(t, err)
	}
	c, err := w.Finish(r.Answer())
	require.NoError(t, err)
	return issued{c: c, key: w.CoinKey(), row: row}
}

// record spends the coin for server and digest and returns its spent-set
// record.
func (x issued) record(t testing.TB, server peer.ID, digest [32]byte) protocol.SpendRecord {
	t.Helper()
	sp, err := coin.NewSpend(x.c, x.key, []byte(server), digest)
	require.NoError(t, err)
	return protocol.SpendRecord{Pub: x.c.Pub, KeysetID: x.c.KeysetID, Unit: "msat", Amount: x.c.Amount,
		Server: server, Digest: digest, Spend: sp.Bytes()}
}

// recoup is the coin's recoup claim for the mint.
func (x issued) recoup(t testing.TB, mint peer.ID, digest [32]byte) RecoupCoin {
	return RecoupCoin{Spend: x.record(t, mint, digest), Key: x.row.Key, Nonce: x.row.Nonce, ChallengeHash: x.row.ChallengeHash}
}

func auditOf(t testing.TB, s *Store, id [32]byte, amount uint64) AuditEntry {
	t.Helper()
	entries, err := s.Audit(context.Background())
	require.NoError(t, err)
	for _, e := range entries {
		if e.KeysetID == id && e.Amount == amount {
			return e
		}
	}
	return AuditEntry{KeysetID: id, Amount: amount}
}

// TestAuditShowsLeak issues, swaps and deposits coins, then has a thief
// with the key of one denomination forge and deposit coins: the audit
// flags that key, and only that one.
func TestAuditShowsLeak(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	c := &clock{now: t0}
	k := openKeys(t, s, c)
	ks, err := k.Generate(ctx, testPolicy, t0)
	require.NoError(t, err)
	sec := secretOf(t, s, ks.ID())
	is := newIssuer(t, s)
	srv, mint := peer.ID("server"), peer.ID("mint")

	ones := []issued{is.withdraw(sec, t0, 1, false), is.withdraw(sec, t0, 1, false), is.withdraw(sec, t0, 1, false)}
	two := is.withdraw(sec, t0, 2, false)
	eight := is.withdraw(sec, t0, 8, false)
	// Swap the 2 into 1 + 1.
	out1, out2 := is.withdraw(sec, t0, 1, true), is.withdraw(sec, t0, 1, true)
	_, err = s.CommitSwap(ctx, protocol.SwapCommit{RequestID: [16]byte{1}, Digest: [32]byte{1},
		Inputs: []protocol.SpendRecord{two.record(t, mint, [32]byte{1})}, Outputs: []protocol.IssueRow{out1.row, out2.row}})
	require.NoError(t, err)
	_, err = s.CreditDeposits(ctx, srv, []protocol.SpendRecord{ones[0].record(t, srv, [32]byte{2}), eight.record(t, srv, [32]byte{2})})
	require.NoError(t, err)

	want := map[uint64]AuditEntry{
		1: {Withdrawn: 3, SwapOut: 2, Deposited: 1},
		2: {Withdrawn: 1, SwapIn: 1},
		8: {Withdrawn: 1, Deposited: 1},
	}
	entries, err := s.Audit(ctx)
	require.NoError(t, err)
	require.Len(t, entries, 3)
	for _, e := range entries {
		key, _ := ks.Key(e.Amount)
		w := want[e.Amount]
		w.KeysetID, w.Amount, w.Key = ks.ID(), e.Amount, key
		assert.Equal(t, w, e)
		assert.False(t, e.Overspent)
	}
	assert.Equal(t, uint64(5), auditOf(t, s, ks.ID(), 1).IssuedValue())

	// The thief forges two 8s; the one honest 8 was spent already.
	f1, f2 := is.withdraw(sec, t0, 8, true), is.withdraw(sec, t0, 8, true)
	_, err = s.CreditDeposits(ctx, srv, []protocol.SpendRecord{f1.record(t, srv, [32]byte{3}), f2.record(t, srv, [32]byte{3})})
	require.NoError(t, err)
	e := auditOf(t, s, ks.ID(), 8)
	assert.True(t, e.Overspent, "forged coins show")
	assert.Equal(t, uint64(8), e.IssuedValue())
	assert.Equal(t, uint64(24), e.SpentValue())
	assert.False(t, auditOf(t, s, ks.ID(), 1).Overspent)

	// The counters survive reopening and agree with the records.
	s = reopen(t, s, path)
	assert.True(t, auditOf(t, s, ks.ID(), 8).Overspent)
	require.NoError(t, s.Check(ctx))
}

// TestRecoup revokes a keyset and recoups its coins into a voucher.
func TestRecoup(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	c := &clock{now: t0}
	k := openKeys(t, s, c)
	ks, err := k.Generate(ctx, testPolicy, t0)
	require.NoError(t, err)
	sec := secretOf(t, s, ks.ID())
	is := newIssuer(t, s)
	srv, mint := peer.ID("server"), peer.ID("mint")
	digest := sha256.Sum256([]byte("a recoup request"))
	voucher := protocol.VoucherID("a voucher for recouped coins")

	a, b, cc := is.withdraw(sec, t0, 4, false), is.withdraw(sec, t0, 4, false), is.withdraw(sec, t0, 2, false)
	forged := is.withdraw(sec, t0, 4, true)
	deposited := b.record(t, srv, [32]byte{1})
	_, err = s.CreditDeposits(ctx, srv, []protocol.SpendRecord{deposited})
	require.NoError(t, err)

	_, err = s.Recoup(ctx, []RecoupCoin{a.recoup(t, mint, digest)}, voucher)
	require.ErrorIs(t, err, ErrNotRevoked)
	require.NoError(t, k.Revoke(ctx, ks.ID()))

	wrongHash := cc.recoup(t, mint, digest)
	wrongHash.ChallengeHash[0] ^= 1
	const (
		credited = pb.DepositStatus_DEPOSIT_CREDITED
		already  = pb.DepositStatus_DEPOSIT_ALREADY_CREDITED
		double   = pb.DepositStatus_DEPOSIT_DOUBLE_SPENT
		invalid  = pb.DepositStatus_DEPOSIT_INVALID
	)
	statuses := func(out []protocol.DepositOutcome) []pb.DepositStatus {
		var st []pb.DepositStatus
		for _, o := range out {
			st = append(st, o.Status)
		}
		return st
	}
	claims := []RecoupCoin{a.recoup(t, mint, digest), b.recoup(t, mint, digest), forged.recoup(t, mint, digest), wrongHash}
	out, err := s.Recoup(ctx, claims, voucher)
	require.NoError(t, err)
	require.Equal(t, []pb.DepositStatus{credited, double, invalid, invalid}, statuses(out))
	require.Equal(t, deposited, *out[1].Conflict, "evidence of the deposit")
	acct, err := s.FundingAccount(ctx, voucher)
	require.NoError(t, err)
	require.Equal(t, protocol.FundingAccount{Unit: "msat", Value: 4, Remaining: 4}, acct)

	// A retry changes nothing; the same coin twice is credited once.
	out, err = s.Recoup(ctx, []RecoupCoin{a.recoup(t, mint, digest), a.recoup(t, mint, digest)}, voucher)
	require.NoError(t, err)
	require.Equal(t, []pb.DepositStatus{already, already}, statuses(out))
	// Another coin claiming a recouped row is refused.
	thief := forged.recoup(t, mint, digest)
	thief.Key, thief.Nonce, thief.ChallengeHash = a.row.Key, a.row.Nonce, a.row.ChallengeHash
	out, err = s.Recoup(ctx, []RecoupCoin{thief}, voucher)
	require.NoError(t, err)
	require.Equal(t, []pb.DepositStatus{invalid}, statuses(out))
	// The right hash, another request: credited to the same voucher.
	out, err = s.Recoup(ctx, []RecoupCoin{cc.recoup(t, mint, [32]byte{7})}, voucher)
	require.NoError(t, err)
	require.Equal(t, []pb.DepositStatus{credited}, statuses(out))
	acct, err = s.FundingAccount(ctx, voucher)
	require.NoError(t, err)
	require.Equal(t, protocol.FundingAccount{Unit: "msat", Value: 6, Remaining: 6}, acct)
	// A recouped coin is spent: its deposit is a double spend.
	rs, err := s.CreditDeposits(ctx, srv, []protocol.SpendRecord{a.record(t, srv, [32]byte{1})})
	require.NoError(t, err)
	require.Equal(t, double, rs[0].Status)
	require.Equal(t, mint, rs[0].Conflict.Server)

	// Funding in another unit refuses the call.
	require.NoError(t, s.OpenFunding(ctx, [32]byte{'s'}, "sat", 1))
	fresh := is.withdraw(sec, t0, 1, false)
	_, err = s.Recoup(ctx, []RecoupCoin{fresh.recoup(t, mint, digest)}, [32]byte{'s'})
	require.ErrorIs(t, err, protocol.ErrFundingUnit)

	// The voucher pays for new coins of another keyset.
	ks2, err := k.Rotate(ctx, testPolicy)
	require.NoError(t, err)
	require.NotNil(t, ks2)
	is.acct = voucher
	is.withdraw(secretOf(t, s, ks2.ID()), t0, 4, false)
	acct, err = s.FundingAccount(ctx, voucher)
	require.NoError(t, err)
	require.Equal(t, uint64(2), acct.Remaining)

	e := auditOf(t, s, ks.ID(), 4)
	assert.Equal(t, uint64(1), e.Recouped)
	assert.Equal(t, uint64(1), e.Deposited)
	assert.False(t, e.Overspent)
	require.NoError(t, s.Check(ctx))
}

// TestPrune prunes rows at issue_until and spent entries and keysets at
// deposit_until, keeps the rows of a revoked keyset for recoup, and
// refuses to add records of closed keysets.
func TestPrune(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	c := &clock{now: t0}
	k := openKeys(t, s, c)
	old, err := k.Generate(ctx, testPolicy, t0)
	require.NoError(t, err)
	rev, err := k.Generate(ctx, testPolicy, t0)
	require.NoError(t, err)
	later, err := k.Generate(ctx, testPolicy, t0.Add(150*time.Minute))
	require.NoError(t, err)
	require.NoError(t, k.Revoke(ctx, rev.ID()))
	oldSec, revSec, laterSec := secretOf(t, s, old.ID()), secretOf(t, s, rev.ID()), secretOf(t, s, later.ID())
	is := newIssuer(t, s)
	srv := peer.ID("server")

	o1, o2 := is.withdraw(oldSec, t0, 1, false), is.withdraw(oldSec, t0, 2, false)
	r1 := is.withdraw(revSec, t0, 4, false)
	l1 := is.withdraw(laterSec, t0.Add(150*time.Minute), 8, false)
	_, err = s.CreditDeposits(ctx, srv, []protocol.SpendRecord{o1.record(t, srv, [32]byte{1}), l1.record(t, srv, [32]byte{1})})
	require.NoError(t, err)
	nonces := func(xs ...issued) [][32]byte {
		var out [][32]byte
		for _, x := range xs {
			out = append(out, x.row.Nonce)
		}
		return out
	}
	stored := func() int {
		rows, err := s.Rows(ctx, nonces(o1, o2, r1, l1), 10)
		require.NoError(t, err)
		return len(rows)
	}

	c.Set(t0.Add(59 * time.Minute))
	st, err := k.Prune(ctx)
	require.NoError(t, err)
	assert.Equal(t, PruneStats{}, st, "nothing is due")

	// The issue window of old is over: its rows go; rev's stay.
	c.Set(t0.Add(time.Hour))
	st, err = k.Prune(ctx)
	require.NoError(t, err)
	assert.Equal(t, PruneStats{Rows: 2}, st)
	assert.Equal(t, 2, stored())
	_, err = s.CommitIssue(ctx, is.acct, "msat", []protocol.IssueRow{o2.row})
	require.ErrorIs(t, err, ErrIssueClosed, "a pruned row is never answered afresh")
	require.ErrorIs(t, err, protocol.ErrExpiredKeyset)
	rs, err := s.CreditDeposits(ctx, srv, []protocol.SpendRecord{o1.record(t, srv, [32]byte{1})})
	require.NoError(t, err)
	assert.Equal(t, pb.DepositStatus_DEPOSIT_ALREADY_CREDITED, rs[0].Status, "spent entries stay")
	e := auditOf(t, s, old.ID(), 1)
	assert.Equal(t, uint64(1), e.Withdrawn)
	assert.Equal(t, uint64(1), e.PrunedRows)
	require.NoError(t, s.Check(ctx))

	// The deposit windows of old and rev are over: everything of them
	// goes, and they leave the keyring.
	c.Set(t0.Add(3 * time.Hour))
	st, err = k.Prune(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), st.Rows, "rev's row")
	assert.Equal(t, uint64(1), st.Spent, "o1")
	assert.ElementsMatch(t, [][32]byte{old.ID(), rev.ID()}, st.Keysets)
	assert.Equal(t, 1, stored(), "later's row stays")
	_, err = s.CreditDeposits(ctx, srv, []protocol.SpendRecord{o2.record(t, srv, [32]byte{1})})
	require.ErrorIs(t, err, ErrDepositClosed)
	_, err = k.Keyring().Lookup(old.ID())
	require.ErrorIs(t, err, coin.ErrUnknownKeyset)
	e = auditOf(t, s, old.ID(), 1)
	assert.Equal(t, AuditEntry{KeysetID: old.ID(), Amount: 1, Withdrawn: 1, Deposited: 1, PrunedRows: 1, PrunedSpent: 1}, e,
		"counts stay; the key is gone with its keyset")
	require.NoError(t, s.Check(ctx))

	// Nothing is left to prune; after reopening the keysets stay gone.
	st, err = k.Prune(ctx)
	require.NoError(t, err)
	assert.Equal(t, PruneStats{}, st)
	s = reopen(t, s, path)
	k = openKeys(t, s, c)
	got, _ := ids(k.Keysets())
	assert.Equal(t, [][32]byte{later.ID()}, got)
	require.NoError(t, s.Check(ctx))
}

// TestPruneChunks prunes more rows than one transaction deletes.
func TestPruneChunks(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	c := &clock{now: t0}
	k := openKeys(t, s, c)
	ks, err := k.Generate(ctx, testPolicy, t0)
	require.NoError(t, err)
	key, _ := ks.Key(1)
	acct := openFunding(t, s, 1, 1<<40)
	const n = pruneChunk + 100
	rows := make([]protocol.IssueRow, 0, 256)
	for i := range n {
		r := protocol.IssueRow{Row: coin.Row{Key: key, Nonce: sha256.Sum256([]byte{byte(i), byte(i >> 8)})}, KeysetID: ks.ID(), Amount: 1}
		rows = append(rows, r)
		if len(rows) == cap(rows) || i == n-1 {
			_, err := s.CommitIssue(ctx, acct, "msat", rows)
			require.NoError(t, err)
			rows = rows[:0]
		}
	}
	c.Set(t0.Add(time.Hour))
	st, err := k.Prune(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(n), st.Rows)
	require.NoError(t, s.Check(ctx))
}
