package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/wallet"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// recoupGrid is a mint and three servers of package node on loopback, and
// a client node's configuration for them.
func recoupGrid(t *testing.T) (*Mint, *AdminClient, []*Server, ClientConfig) {
	t.Helper()
	mintDir := t.TempDir()
	m := roleMint(t, mintDir)
	t.Cleanup(func() { m.Close() })
	ann := filepath.Join(t.TempDir(), "grid.json")
	require.NoError(t, WriteAnnouncement(ann, m.Announcement()))
	var servers []*Server
	for range 3 {
		s := roleServer(t, t.TempDir(), m.Announcement(), nil)
		t.Cleanup(func() { s.Close() })
		require.NoError(t, WriteAnnouncement(ann, s.Announcement()))
		servers = append(servers, s)
	}
	cfg := ClientConfig{
		Dir: t.TempDir(), Announce: ann, Tick: time.Hour, ConnectTimeout: 3 * time.Second,
		PoolServers: -1, K: 1, Happy: 2, N: 3, NoAPI: true, Logger: roleLog(t),
	}
	return m, roleAdmin(t, mintDir), servers, cfg
}

func startClient(t *testing.T, cfg ClientConfig, servers int) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := NewClient(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.WaitConnected(ctx, servers)
	require.NoError(t, err)
	return c
}

// TestClientRecoup: the mint revokes the keyset of a funded wallet that
// has paid for an upload. The client gets the value of its unspent coins
// back as fresh coins of the new keyset; the coins the servers kept stay
// theirs; the mint's audit shows the recoup; a second run finds nothing;
// and the wallet goes on paying with the new coins.
func TestClientRecoup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, admin, servers, cfg := recoupGrid(t)
	c := startClient(t, cfg, len(servers))
	voucher, err := admin.NewVoucher(ctx, "", 200_000)
	require.NoError(t, err)
	_, err = c.Fund(ctx, voucher, 0)
	require.NoError(t, err)
	data := make([]byte, 30_000)
	rand.Read(data)
	capability, _, err := c.Put(ctx, bytes.NewReader(data))
	require.NoError(t, err)
	before, err := c.Wallet().Balance(ctx)
	require.NoError(t, err)
	require.Less(t, before.Unspent, uint64(200_000), "the upload was paid")
	old := c.Wallet().Keysets()[0].ID()

	require.NoError(t, admin.RevokeKeyset(ctx, old))
	res, err := c.Recoup(ctx)
	require.NoError(t, err)
	require.Equal(t, before.Unspent, res.Recouped, "every unspent coin recouped")
	require.Zero(t, res.Refused)
	require.Equal(t, before.Unspent, res.Withdrawn, "and withdrawn again")
	require.Equal(t, before.Unspent, res.Balance)
	coins, err := c.Wallet().Coins(ctx)
	require.NoError(t, err)
	for _, ci := range coins {
		if ci.State == wallet.Unspent {
			require.NotEqual(t, old, ci.Coin.KeysetID, "unspent coins are of the new keyset")
		}
	}
	audit, err := admin.Audit(ctx)
	require.NoError(t, err)
	var recouped uint64
	for _, e := range audit.Entries {
		recouped += e.Recouped * e.Amount
		require.False(t, e.Overspent)
	}
	require.Equal(t, before.Unspent, recouped)

	again, err := c.Recoup(ctx)
	require.NoError(t, err)
	require.Zero(t, again.Coins)
	require.Zero(t, again.Withdrawn)

	// The new coins pay; the file reads back.
	_, _, err = c.Put(ctx, bytes.NewReader(data[:1000]))
	require.NoError(t, err)
	var out bytes.Buffer
	_, err = c.Get(ctx, capability, &out)
	require.NoError(t, err)
	require.Equal(t, data, out.Bytes())
}

// TestClientRecoupResume: a client node that sent a recoup and died
// before settling it resends it from its journal when it starts again;
// the mint credits the coins once, and the value comes back as new coins.
func TestClientRecoupResume(t *testing.T) {
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

	// The steps of recoupBatch, up to the mint's answer; then the node
	// dies (Close) without settling.
	rc, err := c.Wallet().Recoupable(ctx, old)
	require.NoError(t, err)
	var value uint64
	nonces := make([][32]byte, len(rc))
	for i, x := range rc {
		nonces[i] = x.Nonce
		value += x.Coin.Amount
	}
	require.Equal(t, uint64(10_000), value)
	rows, err := c.mint.Restore(ctx, nonces)
	require.NoError(t, err)
	require.Len(t, rows, len(rc))
	proofs := make([]coin.RecoupProof, len(rc))
	pubs := make([][32]byte, len(rc))
	for i, x := range rc {
		var h [32]byte
		proofs[i], h, err = c.Wallet().RecoupProof(&rc[i].Coin, x.Nonce, rows[i].Commitments.R0, rows[i].Commitments.R1)
		require.NoError(t, err)
		require.Equal(t, rows[i].ChallengeHash, h)
		pubs[i] = x.Coin.Pub
	}
	var id [protocol.RequestIDSize]byte
	rand.Read(id[:])
	body, err := protocol.RecoupBody(id, []byte(c.Wallet().RecoupCode()), proofs)
	require.NoError(t, err)
	j := &swapJournal{RequestID: id[:], Body: body}
	for _, p := range pubs {
		j.Inputs = append(j.Inputs, hex.EncodeToString(p[:]))
	}
	require.NoError(t, c.writeRecoupJournal(j))
	spends, err := c.Wallet().ReserveRecoup(ctx, id[:], protocol.RequestDigest(protocol.MintID, body), pubs)
	require.NoError(t, err)
	out, err := c.mint.Recoup(ctx, body, spends)
	require.NoError(t, err)
	for _, r := range out {
		require.Equal(t, pb.DepositStatus_DEPOSIT_CREDITED, r.Status)
	}
	require.NoError(t, c.Close())

	// Started again: the journal is resent and settled, and the code drawn.
	c = startClient(t, cfg, len(servers))
	require.Eventually(t, func() bool {
		b, err := c.Wallet().Balance(ctx)
		return err == nil && b.Unspent == value && b.Reserved == 0
	}, 20*time.Second, 20*time.Millisecond, "the recouped value is back in the wallet")
	js, err := c.readRecoupJournals()
	require.NoError(t, err)
	require.Empty(t, js)
	acct, err := admin.Voucher(ctx, c.Wallet().RecoupCode())
	require.NoError(t, err)
	require.Equal(t, value, acct.Value, "credited once")
	require.Zero(t, acct.Remaining)
}

// TestClientRecoupOnRefusal: the mint revokes the keyset of a funded
// wallet and the servers learn it before the client's housekeeping does.
// The next upload is refused REVOKED_KEYSET by the first server it pays;
// the client recoups its coins then and there, pays again with coins of
// the new keyset, and the upload succeeds with no value lost.
func TestClientRecoupOnRefusal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, admin, servers, cfg := recoupGrid(t)
	c := startClient(t, cfg, len(servers))
	voucher, err := admin.NewVoucher(ctx, "", 100_000)
	require.NoError(t, err)
	_, err = c.Fund(ctx, voucher, 0)
	require.NoError(t, err)
	old := c.Wallet().Keysets()[0].ID()
	require.NoError(t, admin.RevokeKeyset(ctx, old))
	for _, s := range servers {
		require.NoError(t, s.RefreshKeysets(ctx))
	}

	data := make([]byte, 20_000)
	rand.Read(data)
	_, rep, err := c.Put(ctx, bytes.NewReader(data))
	require.NoError(t, err)
	b, err := c.Wallet().Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(100_000), b.Unspent+b.Reserved+b.Bound+rep.Total, "withdrawn = held + paid")
	coins, err := c.Wallet().Coins(ctx)
	require.NoError(t, err)
	for _, ci := range coins {
		if ci.State == wallet.Unspent {
			require.NotEqual(t, old, ci.Coin.KeysetID, "unspent coins are of the new keyset")
		}
	}
}

// TestClientRecoupFalseRefusal: a server that answers REVOKED_KEYSET for
// coins the mint has not revoked gets no retry and starts no recoup; the
// client reads the mint's keysets once for it, and the upload goes on
// with the other servers.
func TestClientRecoupFalseRefusal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, admin, servers, cfg := recoupGrid(t)
	cfg.Happy = 1
	c := startClient(t, cfg, len(servers))
	voucher, err := admin.NewVoucher(ctx, "", 100_000)
	require.NoError(t, err)
	_, err = c.Fund(ctx, voucher, 0)
	require.NoError(t, err)
	ks := c.Wallet().Keysets()[0].ID()
	liar := servers[0]
	liar.keysets.list.Revoke(ks) // it alone believes the keyset revoked

	keysetCalls := func() float64 {
		mfs, err := m.Registry().Gather()
		require.NoError(t, err)
		var n float64
		for _, mf := range mfs {
			if mf.GetName() != "scrip_mint_calls_total" {
				continue
			}
			for _, mt := range mf.GetMetric() {
				for _, l := range mt.GetLabel() {
					if l.GetName() == "op" && l.GetValue() == "keysets" {
						n += mt.GetCounter().GetValue()
					}
				}
			}
		}
		return n
	}
	before := keysetCalls()
	for range 3 {
		data := make([]byte, 5_000)
		rand.Read(data)
		_, _, err := c.Put(ctx, bytes.NewReader(data))
		require.NoError(t, err)
	}
	// Once by the client, for the liar's word; once by the liar itself
	// (its keyset-miss refresh), never per call.
	require.LessOrEqual(t, keysetCalls()-before, 2.0, "the mint's keysets are read at most twice in three uploads")
	js, err := c.readRecoupJournals()
	require.NoError(t, err)
	require.Empty(t, js)
	rc, err := c.Wallet().Recoupable(ctx, ks)
	require.NoError(t, err)
	require.NotEmpty(t, rc, "no coin was recouped")
}
