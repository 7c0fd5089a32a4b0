package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/node"
)

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"10GiB": 10 << 30, "500MB": 500e6, "4096": 4096, "1.5TiB": 3 << 39, "2 gb": 2e9, "1k": 1000,
		"7B": 7, "1KiB": 1024, "0.5KiB": 512, "3pib": 3 << 50,
	} {
		got, err := parseByteSize(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
	for _, in := range []string{"", "GiB", "10XB", "1.2.3GB", "-1GB", "100000000PiB", "10 G i B"} {
		_, err := parseByteSize(in)
		assert.Error(t, err, in)
	}
	assert.Equal(t, "10GiB", formatByteSize(10<<30))
	assert.Equal(t, "1000B", formatByteSize(1000))
}

func TestOneLine(t *testing.T) {
	assert.Nil(t, oneLine(nil))
	assert.Equal(t, io.EOF, oneLine(io.EOF))
	assert.Equal(t, "a; * b; * c", oneLine(errors.New("a\n * b\n * c")).Error())
}

// roleBinary builds the scrip command once per test binary.
var roleBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "scrip-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "scrip")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &buildError{out}
	}
	return bin, nil
})

type buildError struct{ out []byte }

func (e *buildError) Error() string { return "go build: " + string(e.out) }

// roleProc is a scrip command running as a subprocess.
type roleProc struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr lockedBuffer
}

// lockedBuffer is a bytes.Buffer that a subprocess writes while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRole starts scrip with args and waits for its ready line, which
// starts with prefix.
func startRole(t *testing.T, bin, prefix string, args ...string) (*roleProc, string) {
	t.Helper()
	p := &roleProc{cmd: exec.Command(bin, args...)}
	out, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	p.cmd.Stderr = &p.stderr
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	p.stdout = bufio.NewReader(out)
	lines := make(chan string, 1)
	go func() {
		line, _ := p.stdout.ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		require.True(t, strings.HasPrefix(line, prefix), "ready line %q; stderr:\n%s", line, p.stderr.String())
		return p, line
	case <-time.After(30 * time.Second):
		t.Fatalf("no ready line from %v; stderr:\n%s", args, p.stderr.String())
	}
	return nil, ""
}

// stop interrupts the process and checks that it exits cleanly.
func (p *roleProc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "stderr:\n%s", p.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("did not stop")
	}
}

// TestRolesCLI runs scrip mint and scrip serve as subprocesses: each says
// when it serves, the announcements file names both, scrip voucher new
// prints a code, a second server joins the file, mistakes get one line,
// and both stop cleanly on SIGTERM.
func TestRolesCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the scrip command")
	}
	bin, err := roleBinary()
	require.NoError(t, err)
	dir := t.TempDir()
	ann := filepath.Join(dir, "grid.json")
	mintDir := filepath.Join(dir, "mint")

	mint, line := startRole(t, bin, "scrip mint: listening as ", "mint", "--dir", mintDir, "--admin", "127.0.0.1:0", "--announce", ann)
	assert.Contains(t, line, "; admin http://127.0.0.1:")
	s1, line := startRole(t, bin, "scrip serve: listening as ", "serve", "--dir", filepath.Join(dir, "s1"), "--capacity", "1GiB", "--announce", ann, "--metrics", "127.0.0.1:0")
	assert.Contains(t, line, "capacity 1GiB; metrics http://127.0.0.1:")
	s2, _ := startRole(t, bin, "scrip serve: listening as ", "serve", "--dir", filepath.Join(dir, "s2"), "--capacity", "500MB", "--announce", ann)
	anns, err := node.ReadAnnouncements(ann)
	require.NoError(t, err)
	require.Len(t, anns, 3)
	assert.Equal(t, node.RoleMint, anns[0].Role)

	out, err := exec.Command(bin, "voucher", "new", "--amount", "1000", "--dir", mintDir).Output()
	require.NoError(t, err)
	code := strings.TrimSpace(string(out))
	assert.Len(t, code, 32)
	out, err = exec.Command(bin, "voucher", "show", "--dir", mintDir, code).Output()
	require.NoError(t, err)
	assert.Equal(t, "1000 of 1000 msat left\n", string(out))

	// Mistakes: one line on stderr each, and a failing status.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--dir", filepath.Join(dir, "x"), "--capacity", "10XB", "--announce", ann}, "bad --capacity"},
		{[]string{"serve", "--dir", filepath.Join(dir, "x"), "--capacity", "1GB", "--announce", filepath.Join(dir, "none.json")}, "not found"},
		{[]string{"voucher", "new", "--amount", "5", "--dir", dir, "--admin", "127.0.0.1:1"}, "unreachable"},
		{[]string{"voucher", "new", "--amount", "5", "--dir", dir, "--admin", adminURL(t, mintDir)}, "refused the token"},
		{[]string{"mint", "--dir", filepath.Join(dir, "m2"), "--admin", "0.0.0.0:0"}, "not a loopback address"},
	} {
		cmd := exec.Command(bin, c.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		assert.Error(t, err, c.args)
		msg := stderr.String()
		assert.Contains(t, msg, c.want, c.args)
		assert.Equal(t, 1, strings.Count(msg, "\n"), "one line: %q", msg)
	}

	s2.stop(t)
	s1.stop(t)
	mint.stop(t)

	// The mint is gone: a server says so in one line.
	cmd := exec.Command(bin, "serve", "--dir", filepath.Join(dir, "s3"), "--capacity", "1GB", "--announce", ann)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	assert.Error(t, cmd.Run())
	assert.Contains(t, stderr.String(), "mint unreachable")
	assert.Equal(t, 1, strings.Count(stderr.String(), "\n"), "one line: %q", stderr.String())
}

func adminURL(t *testing.T, mintDir string) string {
	info, err := node.ReadAdminInfo(mintDir)
	require.NoError(t, err)
	return info.URL
}
