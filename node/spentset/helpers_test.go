package spentset

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
)

// The store never verifies signatures, so tests use spends with random
// fields: only the amount (a power of two) must parse.

var keysetA = [32]byte{0xaa}

// newSpend returns a spend of amount 2^exp with a public key made from n;
// designated makes it a designated coin.
func newSpend(n uint64, exp uint8, designated bool) *coin.Spend {
	s := &coin.Spend{}
	s.KeysetID = keysetA
	s.Amount = 1 << exp
	binary.BigEndian.PutUint64(s.Pub[:], n)
	s.Pub[31] = 0x5c
	if designated {
		s.Designated = [32]byte{0xd0, 0x01}
	}
	rng := rand.New(rand.NewPCG(n, uint64(exp)))
	for i := range s.Sig {
		s.Sig[i] = byte(rng.Uint32())
		s.SpendSig[i] = byte(rng.Uint32())
	}
	return s
}

var counter atomic.Uint64

// spends returns k fresh spends of amount 2^exp.
func spends(k int, exp uint8, designated bool) []*coin.Spend {
	out := make([]*coin.Spend, k)
	for i := range out {
		out[i] = newSpend(counter.Add(1), exp, designated)
	}
	return out
}

func reqID(n uint64) [16]byte {
	var id [16]byte
	binary.BigEndian.PutUint64(id[8:], n)
	id[0] = 0x1d
	return id
}

func digestOf(s string) [32]byte {
	var d [32]byte
	copy(d[:], s)
	return d
}

func openTemp(t testing.TB, opts ...Option) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spent.db")
	s, err := Open(path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, path
}

func mustCheck(t testing.TB, s *Store) {
	t.Helper()
	require.NoError(t, s.Check(context.Background()))
}

func stats(t testing.TB, s *Store) Stats {
	t.Helper()
	st, err := s.Stats(context.Background())
	require.NoError(t, err)
	return st
}
