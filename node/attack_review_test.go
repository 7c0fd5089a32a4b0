package node

// Attacks on the recoup, restore-guard, deposit and local HTTP code, by a
// second reviewer. Each test states the defence it attacks; a test that
// failed before its fix is an attack that worked, and stays as a
// regression.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// TestAttackBackupNamedLikeTemp: an operator runs "scrip mint backup
// --out" into the mint's own directory with a natural name,
// mint.db.backup-monday. The mint removes the temporary copies that its
// admin endpoint makes while it sends a backup, at every start, by a
// pattern; a backup whose name fits it would be deleted at the next
// start, and found missing on the day it is needed.
//
// Defence: the mint removes only its own temporary copies. FAILED before
// the fix (the temporary copies were "mint.db.backup-*", in plain sight).
func TestAttackBackupNamedLikeTemp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := newGuardEnv(t)
	defer e.closeHosts()
	m := e.start()
	for _, name := range []string{"mint.db.backup-monday", "mint.db.backup-2026-11-29.db", "mint.db.backup"} {
		f, err := os.Create(filepath.Join(e.dir, name))
		require.NoError(t, err)
		_, err = NewAdminClient(m.AdminURL(), m.AdminToken()).Backup(ctx, f)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	// A temporary copy a crash left behind while a backup was sent.
	stale := filepath.Join(e.dir, backupTempPrefix+"123")
	require.NoError(t, os.WriteFile(stale, []byte("partial"), 0o600))
	require.NoError(t, m.Close())
	m = e.start()
	defer m.Close()
	_, err := os.Stat(stale)
	require.ErrorIs(t, err, os.ErrNotExist, "a stale temporary copy is removed at start")
	for _, name := range []string{"mint.db.backup-monday", "mint.db.backup-2026-11-29.db", "mint.db.backup"} {
		_, err := os.Stat(filepath.Join(e.dir, name))
		require.NoError(t, err, "the operator's backup %s is gone", name)
	}
}

// TestAttackRecoupNotTakenSettled: DEPOSIT_NOT_TAKEN is no verdict: the
// mint did not look at the coin (it sheds the coins after a batch that
// failed, for instance). The client node settled a recoup whose coins
// came back NOT_TAKEN as paid, marking the coins spent: their value was
// credited nowhere and lost. A mint that takes no coin of a first
// attempt stands for it here.
//
// Defence: a coin leaves the wallet only for a verdict. FAILED before the
// fix: the wallet ended with nothing.
func TestAttackRecoupNotTakenSettled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, admin, servers, cfg := recoupGrid(t)
	var shed atomic.Int32
	m.Host().SetStreamHandler(libp2pprotocol.ID(protocol.MintID), protocol.NewStreamHandler(protocol.MintID,
		func(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
			mr := new(pb.MintRequest)
			if proto.Unmarshal(req.Body, mr) == nil && mr.GetRecoup() != nil && shed.Add(1) == 1 {
				r := &pb.RecoupResponse{}
				for range req.Spends {
					r.Results = append(r.Results, &pb.DepositResult{Status: pb.DepositStatus_DEPOSIT_NOT_TAKEN})
				}
				body, err := proto.Marshal(&pb.MintResponse{Op: &pb.MintResponse_Recoup{Recoup: r}})
				return &pb.Response{Body: body}, err
			}
			return m.service.Handle(ctx, remote, req)
		}, protocol.WithBaseContext(m.ctx)))
	c := startClient(t, cfg, len(servers))
	voucher, err := admin.NewVoucher(ctx, "", 10_000)
	require.NoError(t, err)
	_, err = c.Fund(ctx, voucher, 0)
	require.NoError(t, err)
	require.NoError(t, admin.RevokeKeyset(ctx, c.Wallet().Keysets()[0].ID()))

	res, err := c.Recoup(ctx)
	require.Error(t, err, "the mint gave no verdict: the recoup is not done")
	require.Zero(t, res.Recouped)
	b, err := c.Wallet().Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(10_000), b.Reserved, "the coins stay reserved for the recoup")
	js, err := c.readRecoupJournals()
	require.NoError(t, err)
	require.Len(t, js, 1, "and journalled, to be resent")

	res, err = c.Recoup(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(10_000), res.Recouped)
	require.Equal(t, uint64(10_000), res.Withdrawn)
	require.Equal(t, uint64(10_000), res.Balance)
	require.Equal(t, int32(2), shed.Load())
}

// journalRecoup does what recoupBatch does up to sending: Restore, the
// proofs, the journal entry and the reservation of every recoupable coin
// of keyset id. It returns the entry.
func journalRecoup(t *testing.T, ctx context.Context, c *Client, id [32]byte) *swapJournal {
	t.Helper()
	rc, err := c.Wallet().Recoupable(ctx, id)
	require.NoError(t, err)
	require.NotEmpty(t, rc)
	nonces := make([][32]byte, len(rc))
	for i, x := range rc {
		nonces[i] = x.Nonce
	}
	rows, err := c.mint.Restore(ctx, nonces)
	require.NoError(t, err)
	require.Len(t, rows, len(rc))
	proofs := make([]coin.RecoupProof, len(rc))
	pubs := make([][32]byte, len(rc))
	for i, x := range rc {
		proofs[i], _, err = c.Wallet().RecoupProof(&rc[i].Coin, x.Nonce, rows[i].Commitments.R0, rows[i].Commitments.R1)
		require.NoError(t, err)
		pubs[i] = x.Coin.Pub
	}
	var rid [protocol.RequestIDSize]byte
	rand.Read(rid[:])
	body, err := protocol.RecoupBody(rid, []byte(c.Wallet().RecoupCode()), proofs)
	require.NoError(t, err)
	j := &swapJournal{RequestID: rid[:], Body: body}
	for _, p := range pubs {
		j.Inputs = append(j.Inputs, hex.EncodeToString(p[:]))
	}
	require.NoError(t, c.writeRecoupJournal(j))
	_, err = c.Wallet().ReserveRecoup(ctx, rid[:], protocol.RequestDigest(protocol.MintID, body), pubs)
	require.NoError(t, err)
	return j
}

// TestAttackRecoupJournalDamaged: one recoup journal entry that does not
// parse (a damaged disk, a file copied in by hand) made the node skip
// every other entry: their coins, reserved for their recoups, stayed
// reserved for good, their value lost to the wallet.
//
// Defence: a damaged entry holds back no other. FAILED before the fix.
func TestAttackRecoupJournalDamaged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, admin, servers, cfg := recoupGrid(t)
	c := startClient(t, cfg, len(servers))
	voucher, err := admin.NewVoucher(ctx, "", 10_000)
	require.NoError(t, err)
	_, err = c.Fund(ctx, voucher, 0)
	require.NoError(t, err)
	old := c.Wallet().Keysets()[0].ID()
	require.NoError(t, admin.RevokeKeyset(ctx, old))
	require.NoError(t, c.loadKeysets(ctx))
	journalRecoup(t, ctx, c, old)
	damaged := filepath.Join(cfg.Dir, clientRecoupDir, "00.json")
	require.NoError(t, os.WriteFile(damaged, []byte(`{"request_id": "AAAA"`), 0o600))

	res, err := c.Recoup(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(10_000), res.Recouped, "the good entry is resumed")
	require.Equal(t, uint64(10_000), res.Balance)
	_, err = os.Stat(damaged)
	require.NoError(t, err, "the damaged entry is left for a person to look at")
}

// FuzzRecoupJournal: parseRecoupJournal never panics, refuses what is over
// its bound, and what it accepts encodes (clientJSON, as written) to an
// entry that parses the same.
func FuzzRecoupJournal(f *testing.F) {
	var proofs []coin.RecoupProof
	for i := range 3 {
		proofs = append(proofs, coin.RecoupProof{Nonce: [32]byte{byte(i)}})
		body, err := protocol.RecoupBody([protocol.RequestIDSize]byte{1}, []byte("abcdefghijklmnopqrstuvwxyz234567"), proofs)
		require.NoError(f, err)
		rid := make([]byte, protocol.RequestIDSize)
		rid[0] = 1
		j := &swapJournal{RequestID: rid, Body: body}
		for k := range proofs {
			j.Inputs = append(j.Inputs, hex.EncodeToString(bytes.Repeat([]byte{byte(k + 1)}, 32)))
		}
		f.Add(clientJSON(j))
	}
	f.Add([]byte(`{"request_id":"AQAAAAAAAAAAAAAAAAAAAA==","body":"","inputs":[]}`))
	f.Add([]byte(`{"request_id":"AQAAAAAAAAAAAAAAAAAAAA==","counters":[1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := parseRecoupJournal(b)
		if err != nil {
			return
		}
		if len(b) > maxRecoupJournal || len(j.Inputs) > protocol.MaxRecoupCoins {
			t.Fatalf("accepted %d bytes, %d inputs", len(b), len(j.Inputs))
		}
		j2, err := parseRecoupJournal(clientJSON(j))
		require.NoError(t, err)
		require.Equal(t, clientJSON(j), clientJSON(j2))
	})
}

// TestAttackRecoupDrawInterrupted: the mint credits a recoup to the
// wallet's recoup code, and the withdrawal of fresh coins with that code
// then fails (the mint did not answer it; or the node crashed between
// settling the recoup and withdrawing). The node looked for work only in
// the recoup journal and among recoupable coins, both empty by then, so
// it never withdrew again: the value sat on the recoup code, missing from
// the wallet until someone ran "scrip wallet recoup" by hand.
//
// Defence: "It then withdraws fresh coins of the current keyset with that
// code." FAILED before the fix.
func TestAttackRecoupDrawInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, admin, servers, cfg := recoupGrid(t)
	var code atomic.Value
	code.Store("")
	var refused atomic.Int32
	m.Host().SetStreamHandler(libp2pprotocol.ID(protocol.MintID), protocol.NewStreamHandler(protocol.MintID,
		func(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error) {
			mr := new(pb.MintRequest)
			if proto.Unmarshal(req.Body, mr) == nil && mr.GetWithdrawFinish() != nil &&
				string(mr.GetWithdrawFinish().Funding) == code.Load().(string) && refused.Add(1) <= 3 {
				return nil, &protocol.Error{Code: pb.Code_INTERNAL, Message: "mint busy"}
			}
			return m.service.Handle(ctx, remote, req)
		}, protocol.WithBaseContext(m.ctx)))
	c := startClient(t, cfg, len(servers))
	code.Store(c.Wallet().RecoupCode())
	voucher, err := admin.NewVoucher(ctx, "", 10_000)
	require.NoError(t, err)
	_, err = c.Fund(ctx, voucher, 0)
	require.NoError(t, err)
	require.NoError(t, admin.RevokeKeyset(ctx, c.Wallet().Keysets()[0].ID()))

	res, err := c.Recoup(ctx)
	require.Error(t, err, "the withdrawal failed")
	require.Equal(t, uint64(10_000), res.Recouped)
	require.Zero(t, res.Withdrawn)

	// The housekeeping's next tick, or the next start, withdraws.
	require.NoError(t, c.recoupIfRevoked(ctx))
	b, err := c.Wallet().Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(10_000), b.Unspent, "the recouped value is back in the wallet")
	acct, err := admin.Voucher(ctx, c.Wallet().RecoupCode())
	require.NoError(t, err)
	require.Zero(t, acct.Remaining)

	// Nothing left to do: the next ticks do not call the mint for it.
	n := refused.Load()
	require.NoError(t, c.recoupIfRevoked(ctx))
	require.Equal(t, n, refused.Load())
}
