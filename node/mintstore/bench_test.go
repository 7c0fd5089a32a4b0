package mintstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// benchRows fills rows with a withdrawal of 16 coins, one per
// denomination, with fresh nonces derived from n.
func benchRows(rows []protocol.IssueRow, n uint64) {
	for i := range rows {
		var r coin.Row
		r.Key = [32]byte{'k', byte(i)}
		r.Nonce = sha256.Sum256(binary.BigEndian.AppendUint64(nil, n*16+uint64(i)))
		r.ChallengeHash = r.Nonce
		r.S = r.Nonce
		rows[i] = protocol.IssueRow{Row: r, KeysetID: [32]byte{'K'}, Amount: 1 << i}
	}
}

// BenchmarkCommitIssue commits withdrawals of 16 coins: fresh ones one
// after another, retries answered from stored rows, and fresh ones from
// concurrent callers. Every commit is synced to the disk of the test's
// temporary directory.
func BenchmarkCommitIssue(b *testing.B) {
	ctx := context.Background()
	b.Run("fresh", func(b *testing.B) {
		s, _ := openTemp(b)
		acct := openFunding(b, s, 1, 1<<62)
		rows := make([]protocol.IssueRow, 16)
		var n uint64
		b.ReportAllocs()
		for b.Loop() {
			n++
			benchRows(rows, n)
			if _, err := s.CommitIssue(ctx, acct, "msat", rows); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("retry", func(b *testing.B) {
		s, _ := openTemp(b)
		acct := openFunding(b, s, 1, 1<<62)
		rows := make([]protocol.IssueRow, 16)
		benchRows(rows, 1)
		_, err := s.CommitIssue(ctx, acct, "msat", rows)
		require.NoError(b, err)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.CommitIssue(ctx, acct, "msat", rows); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		s, _ := openTemp(b)
		acct := openFunding(b, s, 1, 1<<62)
		var n atomic.Uint64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			rows := make([]protocol.IssueRow, 16)
			for pb.Next() {
				benchRows(rows, n.Add(1))
				if _, err := s.CommitIssue(ctx, acct, "msat", rows); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
