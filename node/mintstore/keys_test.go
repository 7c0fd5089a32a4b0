package mintstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// t0 is the start of the tests' clocks.
var t0 = time.Unix(1_800_000_000, 0).UTC()

var testIdentity = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))

// testPolicy has short windows: an hour each, ten minutes of overlap.
var testPolicy = KeyPolicy{Unit: "msat", Exponents: []uint8{0, 1, 2, 3, 4, 5, 6, 7},
	IssuePeriod: time.Hour, SpendPeriod: time.Hour, DepositPeriod: time.Hour, Overlap: 10 * time.Minute}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func openKeys(t testing.TB, s *Store, c *clock) *Keys {
	t.Helper()
	k, err := OpenKeys(context.Background(), s, testIdentity, WithClock(c.Now), WithRand(rand.NewChaCha8([32]byte{'k'})))
	require.NoError(t, err)
	return k
}

// secretOf reads the secret of keyset id from the store, as a test of the
// mint's own keys may.
func secretOf(t testing.TB, s *Store, id [32]byte) *coin.KeysetSecret {
	t.Helper()
	var sec *coin.KeysetSecret
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		r, err := decodeKeyset(id[:], tx.Bucket(bucketKeysets).Get(id[:]))
		if err != nil {
			return err
		}
		sec, err = coin.ParseKeysetSecret(r.secret, testIdentity.Public().(ed25519.PublicKey))
		return err
	}))
	return sec
}

func ids(ps []protocol.PublishedKeyset) (out [][32]byte, revoked [][32]byte) {
	for _, p := range ps {
		out = append(out, p.Keyset.ID())
		if p.Revoked {
			revoked = append(revoked, p.Keyset.ID())
		}
	}
	return out, revoked
}

func TestKeysRotate(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	c := &clock{now: t0}
	k := openKeys(t, s, c)
	window := func(ks *coin.Keyset) [4]int64 {
		return [4]int64{ks.NotBefore, ks.IssueUntil, ks.SpendUntil, ks.DepositUntil}
	}
	at := func(d time.Duration) int64 { return t0.Add(d).Unix() }

	first, err := k.Rotate(ctx, testPolicy)
	require.NoError(t, err)
	require.NotNil(t, first, "no keyset: one is due")
	assert.Equal(t, [4]int64{at(0), at(time.Hour), at(2 * time.Hour), at(3 * time.Hour)}, window(first))
	assert.Equal(t, []uint64{1, 2, 4, 8, 16, 32, 64, 128}, first.Amounts())
	assert.Equal(t, "msat", first.Unit)

	next, err := k.Rotate(ctx, testPolicy)
	require.NoError(t, err)
	assert.Nil(t, next, "not due yet")
	c.Set(t0.Add(49 * time.Minute))
	next, err = k.Rotate(ctx, testPolicy)
	require.NoError(t, err)
	assert.Nil(t, next, "not due a minute before the overlap")

	c.Set(t0.Add(52 * time.Minute))
	next, err = k.Rotate(ctx, testPolicy)
	require.NoError(t, err)
	require.NotNil(t, next)
	assert.Equal(t, at(50*time.Minute), next.NotBefore, "starts the overlap before the old one stops issuing")
	assert.Equal(t, at(110*time.Minute), next.IssueUntil)
	again, err := k.Rotate(ctx, testPolicy)
	require.NoError(t, err)
	assert.Nil(t, again)

	// A mint that was off: the new keyset starts now.
	c.Set(t0.Add(5 * time.Hour))
	late, err := k.Rotate(ctx, testPolicy)
	require.NoError(t, err)
	require.NotNil(t, late)
	assert.Equal(t, at(5*time.Hour), late.NotBefore)

	// Another unit has keysets of its own.
	sats := testPolicy
	sats.Unit = "sat"
	other, err := k.Rotate(ctx, sats)
	require.NoError(t, err)
	require.NotNil(t, other)
	assert.Equal(t, "sat", other.Unit)

	got, _ := ids(k.Keysets())
	assert.Equal(t, [][32]byte{first.ID(), next.ID()}, got[:2], "ordered by not_before")
	assert.ElementsMatch(t, [][32]byte{late.ID(), other.ID()}, got[2:])

	for _, bad := range []KeyPolicy{
		{Unit: "msat", Exponents: []uint8{0}, IssuePeriod: 0},
		{Unit: "msat", Exponents: []uint8{0}, IssuePeriod: time.Hour, Overlap: time.Hour},
		{Unit: "msat", Exponents: []uint8{0}, IssuePeriod: time.Hour, SpendPeriod: -1},
	} {
		_, err := k.Rotate(ctx, bad)
		assert.ErrorIs(t, err, ErrBadPolicy)
	}
	_, err = k.Generate(ctx, KeyPolicy{Unit: "no spaces", Exponents: []uint8{0}, IssuePeriod: time.Hour}, t0)
	assert.ErrorIs(t, err, coin.ErrMalformed)
}

// TestKeysReload checks that keysets and revocations survive reopening,
// and that the keyring refuses revoked keysets.
func TestKeysReload(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	c := &clock{now: t0}
	k := openKeys(t, s, c)
	a, err := k.Generate(ctx, testPolicy, t0)
	require.NoError(t, err)
	b, err := k.Generate(ctx, testPolicy, t0.Add(time.Minute))
	require.NoError(t, err)
	require.NoError(t, k.Revoke(ctx, a.ID()))
	require.NoError(t, k.Revoke(ctx, a.ID()), "revoking twice")
	require.ErrorIs(t, k.Revoke(ctx, [32]byte{9}), protocol.ErrNotFound)
	_, err = k.Keyring().Lookup(a.ID())
	require.ErrorIs(t, err, protocol.ErrRevokedKeyset)

	// Revoking the only active keyset makes a rotation due at once.
	require.NoError(t, k.Revoke(ctx, b.ID()))
	n, err := k.Rotate(ctx, testPolicy)
	require.NoError(t, err)
	require.NotNil(t, n)
	assert.Equal(t, t0.Unix(), n.NotBefore)

	before, beforeRevoked := ids(k.Keysets())
	s = reopen(t, s, path)
	k2 := openKeys(t, s, c)
	after, afterRevoked := ids(k2.Keysets())
	assert.Equal(t, before, after)
	assert.ElementsMatch(t, [][32]byte{a.ID(), b.ID()}, afterRevoked)
	assert.Equal(t, beforeRevoked, afterRevoked)
	_, err = k2.Keyring().Lookup(a.ID())
	require.ErrorIs(t, err, protocol.ErrRevokedKeyset)
	ks, err := k2.Keyring().Lookup(n.ID())
	require.NoError(t, err)
	assert.Equal(t, n.Bytes(), ks.Bytes())
	assert.Len(t, k2.Revoked(), 2)

	// The store of another mint.
	_, err = OpenKeys(ctx, s, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32)))
	require.ErrorIs(t, err, coin.ErrBadSignature)
}
