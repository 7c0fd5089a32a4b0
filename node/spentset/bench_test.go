package spentset

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/scripnet/scrip/coin"
)

// benchInserters is the number of concurrent writers.
const benchInserters = 64

// BenchmarkSpentSet compares group commit with one transaction (and one
// fsync) per write, both with 64 concurrent writers each recording a
// request paid with one fresh coin, durably before Record returns.
//
// The store lives in a directory created next to the package (on the disk
// that holds the repository) rather than in the temporary directory, which
// may be a tmpfs where fsync costs nothing; set SPENTSET_BENCH_DIR to
// measure elsewhere. The filesystem type is logged.
func BenchmarkSpentSet(b *testing.B) {
	for _, bc := range []struct {
		name  string
		group bool
	}{{"group-commit", true}, {"fsync-each", false}} {
		b.Run(bc.name, func(b *testing.B) {
			dir := benchDir(b)
			s, err := Open(filepath.Join(dir, "spent.db"), WithGroupCommit(bc.group))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var next atomic.Uint64
			procs := runtime.GOMAXPROCS(0)
			b.SetParallelism((benchInserters + procs - 1) / procs)
			b.ReportAllocs()
			start := s.CommitStats()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					n := next.Add(1)
					sp := []*coin.Spend{newSpend(n, 0, n%2 == 0)}
					if _, err := s.Record(ctx, reqID(n), digestOf("bench"), sp, 1); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			cs := s.CommitStats()
			if commits := cs.Commits - start.Commits; commits > 0 {
				b.ReportMetric(float64(cs.Ops-start.Ops)/float64(commits), "inserts/commit")
			}
		})
	}
}

// benchDir returns a fresh directory on the repository's disk (or under
// SPENTSET_BENCH_DIR), removed when b ends, and logs its filesystem.
func benchDir(b *testing.B) string {
	parent := os.Getenv("SPENTSET_BENCH_DIR")
	if parent == "" {
		parent = "."
	}
	dir, err := os.MkdirTemp(parent, ".bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	b.Logf("store on %s (%s)", dir, fsType(dir))
	return dir
}
