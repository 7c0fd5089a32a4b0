package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/node"
)

// TestRecoupCLI: the operator revokes the keyset a funded client holds
// coins of, with the built command; "scrip wallet recoup" gets the
// client's value back as coins of the new keyset, the audit shows the
// recoup and no overspending, and the client pays with its new coins.
func TestRecoupCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the scrip command")
	}
	bin, err := roleBinary()
	require.NoError(t, err)
	dir := t.TempDir()
	ann := filepath.Join(dir, "grid.json")
	mintDir, cDir := filepath.Join(dir, "mint"), filepath.Join(dir, "client")
	startRole(t, bin, "scrip mint: listening as ", "mint", "--dir", mintDir, "--admin", "127.0.0.1:0", "--announce", ann)
	for _, s := range []string{"s1", "s2"} {
		startRole(t, bin, "scrip serve: listening as ", "serve", "--dir", filepath.Join(dir, s), "--capacity", "1GiB", "--announce", ann)
	}
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "%v: %s", args, stderr.String())
		return stdout.String()
	}
	code := strings.TrimSpace(run("", "voucher", "new", "--amount", "50000", "--dir", mintDir))
	startRole(t, bin, "scrip client: API on http://127.0.0.1:", "client", "--dir", cDir, "--announce", ann,
		"--k", "1", "--happy", "1", "--n", "2")
	run("", "wait-until-connected", "--dir", cDir, "--min", "2", "--timeout", "20s")
	run(code+"\n", "wallet", "fund", "-", "--dir", cDir)
	file := filepath.Join(dir, "in.bin")
	require.NoError(t, os.WriteFile(file, bytes.Repeat([]byte("recoup\n"), 3000), 0o600))
	run("", "put", file, "--dir", cDir)

	var wi node.WalletInfo
	require.NoError(t, json.Unmarshal([]byte(run("", "wallet", "--json", "--dir", cDir)), &wi))
	held := wi.Balance.Unspent
	require.NotZero(t, held)
	require.Less(t, held, uint64(50000), "the upload was paid")

	var kss []node.KeysetInfo
	require.NoError(t, json.Unmarshal([]byte(run("", "keyset", "list", "--json", "--dir", mintDir)), &kss))
	require.Len(t, kss, 1)
	out := run("", "keyset", "revoke", kss[0].ID, "--dir", mintDir)
	require.Equal(t, "keyset "+kss[0].ID+" revoked\n", out)
	list := run("", "keyset", "list", "--dir", mintDir)
	require.Contains(t, list, kss[0].ID+"  revoked")
	require.Equal(t, 2, strings.Count(list, "\n"), "a new keyset: %s", list)

	out = run("", "wallet", "recoup", "--dir", cDir)
	m := regexp.MustCompile(`^recouped (\d+) msat from \d+ coins of revoked keysets \(0 msat refused\); withdrew (\d+) msat; the wallet holds (\d+) msat\n$`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	for _, s := range m[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
		require.Equal(t, held, v, out)
	}
	require.Equal(t, "no coins of revoked keysets; the wallet holds "+strconv.FormatUint(held, 10)+" msat\n",
		run("", "wallet", "recoup", "--dir", cDir))
	audit := run("", "audit", "--dir", mintDir)
	require.NotContains(t, audit, "OVERSPENT")
	require.Regexp(t, `recouped [1-9]\d* coins`, audit)

	// The new coins pay.
	run("", "put", file, "--dir", cDir)
}
