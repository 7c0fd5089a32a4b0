package mintstore

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAttackGuardFileUnbounded: the guard file was read whole (os.ReadFile)
// before it was parsed: a guard file path that names a large file (a
// --guard-file given wrong, a file grown by a fault) made every start
// read and hold all of it.
//
// Defence: every decoder is bounded. FAILED before the fix: a 256 MiB
// guard file cost 256 MiB. Now at most a few KiB are read, and the file,
// which does not parse, counts as a restore (the safe side).
func TestAttackGuardFileUnbounded(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mint.db")
	g := &guardMint{t: t, path: path, clock: &clock{now: t0}}
	g.open(WithGuardInterval(0))
	ks := g.issuing()
	g.close()
	big := filepath.Join(dir, "big.guard")
	require.NoError(t, os.WriteFile(big, nil, 0o600))
	require.NoError(t, os.Truncate(big, 256<<20)) // sparse

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readGuardFile(big)
	runtime.ReadMemStats(&after)
	require.Error(t, err)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "bytes allocated to read the guard file")

	r := g.open(WithGuardInterval(0), WithGuardFile(big))
	assert.True(t, r.Restored)
	assert.Contains(t, r.Reason, "does not parse")
	assert.Contains(t, r.Retired, ks.ID())
}
