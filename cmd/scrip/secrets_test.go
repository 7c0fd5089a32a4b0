package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/node"
)

// cliRunStdin runs one command as typed with stdin as its standard input.
func cliRunStdin(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cliStdin = strings.NewReader(stdin)
	t.Cleanup(func() { cliStdin = os.Stdin })
	return cliRun(t, args...)
}

// cliHelp returns what "scrip ARGS -h" prints.
func cliHelp(t *testing.T, args ...string) string {
	t.Helper()
	var b bytes.Buffer
	cliStderr = &b
	t.Cleanup(func() { cliStderr = os.Stderr })
	_, err := cliRun(t, append(args, "-h")...)
	require.ErrorIs(t, err, flag.ErrHelp)
	return b.String()
}

// TestCLISecretsFromStdin: voucher codes and capabilities are read from
// standard input when given as "-" (and a voucher code from
// $SCRIP_VOUCHER), so that they are not in the command line other local
// users see; the help says why.
func TestCLISecretsFromStdin(t *testing.T) {
	dir := t.TempDir()
	announce, voucher := cliGrid(t, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := node.NewClient(ctx, node.ClientConfig{Dir: dir, Announce: announce, Tick: time.Hour, PoolServers: -1})
	require.NoError(t, err)
	defer cl.Close()
	_, err = cliRun(t, "wait-until-connected", "--dir", dir, "--min", "7", "--timeout", "10s")
	require.NoError(t, err)

	// wallet fund: -, then $SCRIP_VOUCHER; an argument wins over it.
	out, err := cliRunStdin(t, voucher(30_000)+"\n", "wallet", "fund", "-", "--dir", dir)
	require.NoError(t, err)
	require.Contains(t, out, "withdrew 30000 msat in ")
	t.Setenv(voucherEnv, voucher(20_000))
	out, err = cliRun(t, "wallet", "fund", "--dir", dir)
	require.NoError(t, err)
	require.Contains(t, out, "the wallet holds 50000 msat")
	_, err = cliRun(t, "wallet", "fund", "abcdefghijklmnopqrstuvwxyz234567", "--dir", dir)
	require.EqualError(t, err, "unknown voucher: the mint does not know this voucher")
	t.Setenv(voucherEnv, "")
	_, err = cliRun(t, "wallet", "fund", "--dir", dir)
	require.ErrorIs(t, err, errUsage)
	_, err = cliRunStdin(t, "\n", "wallet", "fund", "-", "--dir", dir)
	require.EqualError(t, err, "no voucher code on standard input")

	// get: the capability from standard input.
	file := filepath.Join(t.TempDir(), "in.txt")
	data := bytes.Repeat([]byte("a secret read key\n"), 1000)
	require.NoError(t, os.WriteFile(file, data, 0o600))
	out, err = cliRun(t, "put", "-q", file, "--dir", dir)
	require.NoError(t, err)
	capText := strings.TrimSpace(out)
	got := filepath.Join(t.TempDir(), "out.txt")
	_, err = cliRunStdin(t, capText+"\n", "get", "-", "-o", got, "--dir", dir)
	require.NoError(t, err)
	b, err := os.ReadFile(got)
	require.NoError(t, err)
	require.Equal(t, data, b)
	t.Setenv("SCRIP_DIR", t.TempDir())
	_, err = cliRunStdin(t, capText, "get", "-q", "-")
	require.ErrorIs(t, err, errNoNode, "no node in $SCRIP_DIR")
	out, err = cliRunStdin(t, capText, "get", "--dir", dir, "-")
	require.NoError(t, err)
	require.Equal(t, string(data), out, "no newline at the end of standard input, output to standard output")
	_, err = cliRunStdin(t, "", "get", "-", "--dir", dir)
	require.EqualError(t, err, "reading the capability from standard input: EOF")
	_, err = cliRunStdin(t, "scrip:chk:nope\n", "get", "-", "--dir", dir)
	require.ErrorContains(t, err, "not a file capability")
	require.NotContains(t, err.Error(), "scrip:chk:nope", "the error does not repeat the capability")

	// The help says that arguments are visible, and what to do instead.
	for _, args := range [][]string{{"wallet", "fund"}, {"wallet", "restore"}, {"get"}, {"voucher", "show"}} {
		help := cliHelp(t, args...)
		require.Contains(t, help, "visible to other local users", "%v", args)
		require.Contains(t, help, "give - to read it from standard input", "%v", args)
	}
	require.Contains(t, cliHelp(t, "wallet", "fund"), "$SCRIP_VOUCHER")
	// A token in the environment is not printed as a flag's default.
	t.Setenv("SCRIP_ADMIN_TOKEN", "0123456789abcdef-secret-admin-token")
	for _, args := range [][]string{{"voucher", "new"}, {"voucher", "show"}} {
		help := cliHelp(t, args...)
		require.NotContains(t, help, "secret-admin-token", "%v", args)
		require.Contains(t, help, "visible to other local users", "%v --token", args)
	}
}

// TestCLIConnectLoopbackOnly: the CLI sends the client node's token only
// to a loopback address, whatever the api file says.
func TestCLIConnectLoopbackOnly(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, node.ClientTokenFile), []byte("tok\n"), 0o600))
	for u, ok := range map[string]bool{
		"http://127.0.0.1:7391":      true,
		"http://127.0.0.1:7391/":     true,
		"http://localhost:7391":      true,
		"http://[::1]:7391":          true,
		"http://192.0.2.1:7391":      false,
		"https://127.0.0.1:7391":     false,
		"http://evil.example:7391":   false,
		"http://127.0.0.1:7391/x?y":  false,
		"http://u:p@127.0.0.1:7391":  false,
		"http://127.0.0.1":           false,
		"http://127.0.0.1.nip.io:80": false,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, node.ClientAPIFile), []byte(u+"\n"), 0o600))
		_, err := cliConnect(dir)
		require.Equal(t, ok, err == nil, "%s: %v", u, err)
	}
}

// TestRolesSecretsCLI runs the roles as subprocesses: scrip voucher new
// prints the code on standard output and nothing else; the code is then
// passed on standard input to voucher show and wallet fund, and a
// capability to get; each role's --metrics endpoint wants the token of
// its directory's metrics.token file unless --metrics-open, and refuses a
// foreign Host header.
func TestRolesSecretsCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the scrip command")
	}
	bin, err := roleBinary()
	require.NoError(t, err)
	dir := t.TempDir()
	ann := filepath.Join(dir, "grid.json")
	mintDir, s1Dir, s2Dir, cDir := filepath.Join(dir, "mint"), filepath.Join(dir, "s1"), filepath.Join(dir, "s2"), filepath.Join(dir, "client")
	metricsURL := regexp.MustCompile(`metrics (?:on )?(http://\S+/metrics)`)

	mint, line := startRole(t, bin, "scrip mint: listening as ", "mint", "--dir", mintDir, "--admin", "127.0.0.1:0", "--announce", ann,
		"--metrics", "127.0.0.1:0")
	mintMetrics := metricsURL.FindStringSubmatch(line)
	require.NotNil(t, mintMetrics, line)
	s1, line := startRole(t, bin, "scrip serve: listening as ", "serve", "--dir", s1Dir, "--capacity", "1GiB", "--announce", ann,
		"--metrics", "127.0.0.1:0")
	s1Metrics := metricsURL.FindStringSubmatch(line)
	require.NotNil(t, s1Metrics, line)
	s2, line := startRole(t, bin, "scrip serve: listening as ", "serve", "--dir", s2Dir, "--capacity", "1GiB", "--announce", ann,
		"--metrics", "127.0.0.1:0", "--metrics-open")
	s2Metrics := metricsURL.FindStringSubmatch(line)
	require.NotNil(t, s2Metrics, line)

	get := func(u, token, host string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	token := func(dir string) string {
		b, err := os.ReadFile(filepath.Join(dir, node.MetricsTokenFile))
		require.NoError(t, err)
		fi, err := os.Stat(filepath.Join(dir, node.MetricsTokenFile))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
		return strings.TrimSpace(string(b))
	}
	for _, c := range []struct{ url, dir, metric string }{
		{mintMetrics[1], mintDir, "scrip_mint_"},
		{s1Metrics[1], s1Dir, "scrip_server_"},
	} {
		status, body := get(c.url, "", "")
		assert.Equal(t, http.StatusUnauthorized, status, c.url)
		assert.NotContains(t, body, c.metric)
		status, body = get(c.url, token(c.dir), "")
		assert.Equal(t, http.StatusOK, status, c.url)
		assert.Contains(t, body, c.metric)
		port := c.url[strings.LastIndex(c.url, ":")+1 : strings.LastIndex(c.url, "/")]
		status, _ = get(c.url, token(c.dir), "evil.example:"+port)
		assert.Equal(t, http.StatusForbidden, status, c.url)
	}
	status, body := get(s2Metrics[1], "", "")
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "scrip_server_")
	assert.NoFileExists(t, filepath.Join(s2Dir, node.MetricsTokenFile))
	// The admin endpoint's own /metrics wants the admin token.
	status, _ = get(adminURL(t, mintDir)+"/metrics", "", "")
	assert.Equal(t, http.StatusUnauthorized, status)

	run := func(stdin string, args ...string) (string, string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	// voucher new: the code on standard output, nothing on standard error.
	code, stderr, err := run("", "voucher", "new", "--amount", "40000", "--dir", mintDir)
	require.NoError(t, err, stderr)
	assert.Empty(t, stderr)
	assert.Regexp(t, `^[a-z2-7]{32}\n$`, code)
	code = strings.TrimSpace(code)
	out, stderr, err := run(code+"\n", "voucher", "show", "-", "--dir", mintDir)
	require.NoError(t, err, stderr)
	assert.Equal(t, "40000 of 40000 msat left\n", out)
	cmd := exec.Command(bin, "voucher", "show", "--dir", mintDir)
	cmd.Env = append(os.Environ(), voucherEnv+"="+code)
	b, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "40000 of 40000 msat left\n", string(b))
	_, stderr, err = run("nosuchvouchercodeatallanywhere12\n", "voucher", "show", "-", "--dir", mintDir)
	require.Error(t, err)
	assert.Equal(t, "scrip voucher show: no such voucher\n", stderr)

	// A client node, funded and used through standard input.
	cl, line := startRole(t, bin, "scrip client: API on http://127.0.0.1:", "client", "--dir", cDir, "--announce", ann,
		"--k", "1", "--happy", "1", "--n", "2", "--metrics", "127.0.0.1:0")
	_ = line
	next, err := cl.stdout.ReadString('\n')
	require.NoError(t, err)
	cMetrics := metricsURL.FindStringSubmatch(next)
	require.NotNil(t, cMetrics, next)
	status, _ = get(cMetrics[1], "", "")
	assert.Equal(t, http.StatusUnauthorized, status)
	status, body = get(cMetrics[1], token(cDir), "")
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "scrip_client_")

	_, stderr, err = run("", "wait-until-connected", "--dir", cDir, "--min", "2", "--timeout", "20s")
	require.NoError(t, err, stderr)
	out, stderr, err = run(code+"\n", "wallet", "fund", "-", "--dir", cDir)
	require.NoError(t, err, stderr)
	assert.Contains(t, out, "withdrew 40000 msat")
	file := filepath.Join(dir, "in.txt")
	data := bytes.Repeat([]byte("scrip\n"), 5000)
	require.NoError(t, os.WriteFile(file, data, 0o600))
	capText, stderr, err := run("", "put", "-q", file, "--dir", cDir)
	require.NoError(t, err, stderr)
	outFile := filepath.Join(dir, "out.txt")
	_, stderr, err = run(capText, "get", "-", "-o", outFile, "-q", "--dir", cDir)
	require.NoError(t, err, stderr)
	got, err := os.ReadFile(outFile)
	require.NoError(t, err)
	assert.Equal(t, data, got)

	// --metrics-open alone is a mistake.
	_, stderr, err = run("", "serve", "--dir", filepath.Join(dir, "x"), "--capacity", "1GB", "--announce", ann, "--metrics-open")
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "%v", err)
	assert.Equal(t, 2, exit.ExitCode())
	assert.Contains(t, stderr, "--metrics-open and --metrics-host need --metrics ADDR")

	cl.stop(t)
	s2.stop(t)
	s1.stop(t)
	mint.stop(t)
}
