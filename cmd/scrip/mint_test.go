package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/node"
	"github.com/scripnet/scrip/node/mintstore"
)

// TestMintBackupCLI runs scrip mint backup against a running mint (through
// its admin endpoint) and a stopped one (from its store), then starts the
// mint on the backup and checks that it retires the keyset it held.
func TestMintBackupCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the scrip command")
	}
	bin, err := roleBinary()
	require.NoError(t, err)
	dir := t.TempDir()
	mintDir := filepath.Join(dir, "mint")

	mint, _ := startRole(t, bin, "scrip mint: listening as ", "mint", "--dir", mintDir, "--admin", "127.0.0.1:0")
	hot := filepath.Join(dir, "hot.db")
	out, err := exec.Command(bin, "mint", "backup", "--dir", mintDir, "--out", hot).Output()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(out), "scrip mint backup: wrote "+hot+" ("), "%s", out)
	assert.Contains(t, string(out), "a restore retires 1 keysets")
	info, err := mintstore.ReadBackupInfo(hot)
	require.NoError(t, err)
	require.Len(t, info.Issuing, 1)
	fi, err := os.Stat(hot)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	mint.stop(t)

	// Stopped: from the store (the admin file names an endpoint that no
	// longer answers).
	cold := filepath.Join(dir, "cold.db")
	out, err = exec.Command(bin, "mint", "backup", "--dir", mintDir, "--out", cold).Output()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "wrote "+cold)
	_, err = mintstore.ReadBackupInfo(cold)
	require.NoError(t, err)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"mint", "backup", "--dir", mintDir}, "--out FILE is required"},
		{[]string{"mint", "backup", "--dir", mintDir, "--out", filepath.Join(mintDir, "mint.db")}, "the mint's store itself"},
		{[]string{"mint", "backup", "--dir", filepath.Join(dir, "none"), "--out", filepath.Join(dir, "x.db")}, "no mint store"},
		{[]string{"mint", "backup", "--dir", mintDir, "--admin", "127.0.0.1:1", "--out", filepath.Join(dir, "x.db")}, "unreachable"},
	} {
		cmd := exec.Command(bin, c.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		assert.Error(t, cmd.Run(), c.args)
		assert.Contains(t, stderr.String(), c.want, c.args)
	}

	// Restore the hot backup: the mint retires the keyset it held and
	// makes a fresh one.
	b, err := os.ReadFile(hot)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(mintDir, node.MintStoreFile), b, 0o600))
	mint, _ = startRole(t, bin, "scrip mint: listening as ", "mint", "--dir", mintDir, "--admin", "127.0.0.1:0")
	log := mint.stderr.String()
	assert.Contains(t, log, "restored from a copy")
	assert.Contains(t, log, "backup taken at")
	assert.Contains(t, log, "new keyset")
	mint.stop(t)
}
