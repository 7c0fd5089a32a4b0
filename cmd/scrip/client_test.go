package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node"
	"github.com/scripnet/scrip/protocol"
)

// cliGrid starts a mint and n storage servers made of package protocol's
// pieces on 127.0.0.1, writes their announcements file and returns its
// path and a function that makes vouchers.
func cliGrid(t *testing.T, n int) (announce string, voucher func(uint64) string) {
	t.Helper()
	ctx := context.Background()
	announce = filepath.Join(t.TempDir(), "announce.json")
	_, identity, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	key, err := crypto.UnmarshalEd25519PrivateKey(identity)
	require.NoError(t, err)
	mh, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	t.Cleanup(func() { mh.Close() })
	now := time.Now()
	ks, secret, err := coin.GenerateKeyset(rand.Reader, identity, coin.KeysetParams{
		Unit: "msat", Exponents: []uint8{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		NotBefore: now.Add(-time.Minute), IssueUntil: now.Add(time.Hour), SpendUntil: now.Add(2 * time.Hour), DepositUntil: now.Add(3 * time.Hour),
	})
	require.NoError(t, err)
	keys := protocol.NewMintKeyring(identity.Public().(ed25519.PublicKey))
	require.NoError(t, keys.Add(secret))
	store := protocol.NewMemMintStore()
	funding := protocol.NewVoucherFunding(store, [32]byte{1})
	require.NoError(t, protocol.NewMintService(mh.ID(), keys, store, funding).Register(mh))
	require.NoError(t, node.WriteAnnouncement(announce, node.Announce(node.RoleMint, peer.AddrInfo{ID: mh.ID(), Addrs: mh.Addrs()})))
	for range n {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		require.NoError(t, err)
		t.Cleanup(func() { h.Close() })
		prices := protocol.NewPriceBook()
		sched, err := protocol.SignSchedule(h.Peerstore().PrivKey(h.ID()), protocol.Schedule{
			Server: h.ID(), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), Unit: "msat",
			Rates: protocol.Rates{PerCall: 2, StorePerGiBMonth: 1 << 20, WritePerGiB: 1 << 10, ReadPerGiB: 1 << 10},
		})
		require.NoError(t, err)
		prices.Publish(sched, "")
		kl, err := protocol.NewKeysetList(ks)
		require.NoError(t, err)
		pw := protocol.NewPaywall(h.ID(), prices, kl, protocol.NewMemSpentStore())
		require.NoError(t, protocol.NewStorageServer(protocol.NewMemBackend(1<<30, 1<<26, nil), pw).Register(h))
		require.NoError(t, node.WriteAnnouncement(announce, node.Announce(node.RoleServer, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})))
	}
	return announce, func(v uint64) string {
		code, err := funding.CreateVoucher(ctx, rand.Reader, "msat", v)
		require.NoError(t, err)
		return code
	}
}

// cliRun runs one command as typed and returns what it printed.
func cliRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cliStdout = &out
	t.Cleanup(func() { cliStdout = os.Stdout })
	var c command
	var n int
	for i := min(len(args), 2); i >= 1; i-- {
		if found, ok := commands[strings.Join(args[:i], " ")]; ok {
			c, n = found, i
			break
		}
	}
	require.NotZero(t, n, "no command %q", args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.run(ctx, args[n:])
	return out.String(), err
}

// TestCLIClient runs the client commands against a client node of a
// grid.
func TestCLIClient(t *testing.T) {
	dir := t.TempDir()
	// Before a node runs, every command says how to start one.
	for _, args := range [][]string{
		{"status"}, {"put", "x"}, {"get", "scrip:chk:x"}, {"wallet", "fund", "abcdefghijklmnopqrstuvwxyz234567"},
		{"wait-until-connected", "--min", "1"},
	} {
		_, err := cliRun(t, append(args, "--dir", dir)...)
		require.ErrorIs(t, err, errNoNode, "%v", args)
		require.Equal(t, "no client node running: start one with `scrip client`", err.Error())
	}

	announce, voucher := cliGrid(t, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := node.NewClient(ctx, node.ClientConfig{Dir: dir, Announce: announce, Tick: time.Hour, PoolServers: -1})
	require.NoError(t, err)
	defer cl.Close()

	out, err := cliRun(t, "wait-until-connected", "--dir", dir, "--min", "7", "--timeout", "10s")
	require.NoError(t, err)
	require.Equal(t, "7 servers connected\n", out)
	_, err = cliRun(t, "wait-until-connected", "--dir", dir, "--min", "8", "--timeout", "50ms")
	require.EqualError(t, err, "7 of 8 servers connected after 50ms")

	_, err = cliRun(t, "put", filepath.Join(dir, "wallet.db"), "--dir", dir)
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "no funds: "), err.Error())

	v := voucher(50_000)
	out, err = cliRun(t, "wallet", "fund", v, "--dir", dir)
	require.NoError(t, err)
	require.Equal(t, "withdrew 50000 msat in 6 coins; the wallet holds 50000 msat\n", out)
	_, err = cliRun(t, "wallet", "fund", v, "--dir", dir)
	require.EqualError(t, err, "voucher already spent: it holds less than 1 msat")
	_, err = cliRun(t, "wallet", "fund", "abcdefghijklmnopqrstuvwxyz234567", "--dir", dir)
	require.EqualError(t, err, "unknown voucher: the mint does not know this voucher")

	file := filepath.Join(t.TempDir(), "in.txt")
	data := bytes.Repeat([]byte("hello, grid\n"), 10_000)
	require.NoError(t, os.WriteFile(file, data, 0o600))
	out, err = cliRun(t, "put", "--dir", dir, file)
	require.NoError(t, err)
	capText := strings.TrimSpace(out)
	require.True(t, strings.HasPrefix(capText, "scrip:chk:"))

	got := filepath.Join(t.TempDir(), "out.txt")
	_, err = cliRun(t, "get", capText, "-o", got, "--dir", dir)
	require.NoError(t, err)
	b, err := os.ReadFile(got)
	require.NoError(t, err)
	require.Equal(t, data, b)
	_, err = cliRun(t, "get", "scrip:chk:nope", "-o", got, "--dir", dir)
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "not a file capability: "), err.Error())

	out, err = cliRun(t, "status", "--dir", dir)
	require.NoError(t, err)
	require.Contains(t, out, "servers  7 connected of 7 known")
	out, err = cliRun(t, "wallet", "--dir", dir)
	require.NoError(t, err)
	require.Contains(t, out, "unspent ")

	phrase, err := cliRun(t, "wallet", "backup", "--dir", dir)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(phrase, "scrip-seed-"))
	_, err = cliRun(t, "wallet", "restore", strings.TrimSpace(phrase), "--dir", dir)
	require.ErrorContains(t, err, "stop it before restoring")

	// Offline: backup reads the wallet file; restore writes a new one.
	require.NoError(t, cl.Close())
	offline, err := cliRun(t, "wallet", "backup", "--dir", dir)
	require.NoError(t, err)
	require.Equal(t, phrase, offline)
	dir2 := t.TempDir()
	_, err = cliRun(t, "wallet", "restore", "scrip-seed-AAAA", "--dir", dir2, "--announce", announce)
	require.EqualError(t, err, "not a seed phrase, or it has a typo: check it against your backup")
	out, err = cliRun(t, "wallet", "restore", strings.TrimSpace(phrase), "--dir", dir2, "--announce", announce)
	require.NoError(t, err)
	require.Contains(t, out, "restored the wallet")
	require.FileExists(t, filepath.Join(dir2, node.ClientRestoreFile))
	cl2, err := node.NewClient(ctx, node.ClientConfig{Dir: dir2, Announce: announce, Tick: time.Hour, PoolServers: -1, NoAPI: true})
	require.NoError(t, err)
	defer cl2.Close()
	bal, err := cl2.Wallet().Balance(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(50_000), bal.Unspent, "the restored wallet swapped back the coins the servers never deposited")
	require.NoFileExists(t, filepath.Join(dir2, node.ClientRestoreFile))
}
