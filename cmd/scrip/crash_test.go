package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/internal/crashpoint"
	"github.com/scripnet/scrip/node"
	"github.com/scripnet/scrip/node/mintstore"
	"github.com/scripnet/scrip/node/spentset"
	"github.com/scripnet/scrip/node/wallet"
	"github.com/scripnet/scrip/protocol"
)

// The crash tests run the built scrip command as separate processes, kill
// them with SIGKILL (at a crash point of package internal/crashpoint, or
// at an arbitrary moment by PID), start them again on the same directory
// and check that the work finishes and that no value is lost or counted
// twice.

// crashGrid is a mint, storage servers and a client node, each a scrip
// process with its own directory and fixed listen address, so that a
// restarted process is found where it was.
type crashGrid struct {
	t        *testing.T
	bin      string
	root     string
	announce string

	mintDir    string
	mintListen string
	mint       *crashProc

	serverDirs    []string
	serverListens []string
	serverMetrics []string
	serverIDs     []peer.ID
	servers       []*crashProc

	clientDir string
	client    *crashProc
}

// crashProc is a scrip process of the crash test.
type crashProc struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr lockedBuffer
	exited chan struct{} // closed once the process is reaped
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProc starts scrip with args and the crash point crash armed (if
// not empty) and waits for its ready line, which starts with prefix.
func (g *crashGrid) startProc(crash, prefix string, args ...string) (*crashProc, string) {
	t := g.t
	t.Helper()
	p := &crashProc{cmd: exec.Command(g.bin, args...)}
	p.cmd.Env = append(os.Environ(), crashpoint.EnvVar+"="+crash)
	out, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	p.cmd.Stderr = &p.stderr
	require.NoError(t, p.cmd.Start())
	exited := make(chan struct{})
	p.exited = exited
	go func() {
		p.cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			p.cmd.Process.Kill()
			<-exited
		}
	})
	p.stdout = bufio.NewReader(out)
	lines := make(chan string, 1)
	go func() {
		line, _ := p.stdout.ReadString('\n')
		lines <- line
		io.Copy(io.Discard, p.stdout)
	}()
	select {
	case line := <-lines:
		require.True(t, strings.HasPrefix(line, prefix), "ready line %q of %v; stderr:\n%s", line, args, p.stderr.String())
		return p, line
	case <-time.After(30 * time.Second):
		t.Fatalf("no ready line from %v; stderr:\n%s", args, p.stderr.String())
	}
	return nil, ""
}

// waitKilled waits for p to die of SIGKILL, as a crash point does.
func (g *crashGrid) waitKilled(p *crashProc, what string) {
	g.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		g.t.Fatalf("%s: not killed within 30s; stderr:\n%s", what, p.stderr.String())
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.True(g.t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL,
		"%s: want death by SIGKILL, got %v; stderr:\n%s", what, p.cmd.ProcessState, p.stderr.String())
}

// kill sends SIGKILL to p by its PID, whatever it is doing.
func (g *crashGrid) kill(p *crashProc, what string) {
	g.t.Helper()
	require.NoError(g.t, syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL))
	g.waitKilled(p, what)
}

// stopProc stops p with SIGTERM and checks that it exits cleanly.
func (g *crashGrid) stopProc(p *crashProc, what string) {
	g.t.Helper()
	require.NoError(g.t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		g.t.Fatalf("%s did not stop", what)
	}
	require.True(g.t, p.cmd.ProcessState.Success(), "%s: %v; stderr:\n%s", what, p.cmd.ProcessState, p.stderr.String())
}

func (g *crashGrid) startMint(crash string) {
	g.mint, _ = g.startProc(crash, "scrip mint: listening as ",
		"mint", "--dir", g.mintDir, "--listen", g.mintListen, "--admin", "127.0.0.1:0", "--announce", g.announce)
}

func (g *crashGrid) startServer(i int, crash string) {
	p, line := g.startProc(crash, "scrip serve: listening as ",
		"serve", "--dir", g.serverDirs[i], "--listen", g.serverListens[i], "--capacity", "1GiB",
		"--announce", g.announce, "--deposit-interval", "500ms", "--metrics", g.serverMetrics[i])
	id, err := peer.Decode(strings.Fields(strings.TrimPrefix(line, "scrip serve: listening as "))[0])
	require.NoError(g.t, err)
	if g.serverIDs[i] != "" {
		require.Equal(g.t, g.serverIDs[i], id, "a restarted server keeps its identity")
	}
	g.serverIDs[i] = id
	g.servers[i] = p
}

func (g *crashGrid) startClient(crash string) {
	g.client, _ = g.startProc(crash, "scrip client: API on ",
		"client", "--dir", g.clientDir, "--announce", g.announce, "--api", "127.0.0.1:0",
		"--k", "2", "--happy", "3", "--n", strconv.Itoa(len(g.servers)))
	_, _, err := g.cli("wait-until-connected", "--min", strconv.Itoa(len(g.servers)), "--timeout", "20s")
	require.NoError(g.t, err)
}

// cli runs a one-shot scrip command against the client node (or, for
// voucher commands, the mint's admin endpoint).
func (g *crashGrid) cli(args ...string) (string, string, error) {
	full := append(slices.Clone(args), "--dir", g.clientDir)
	if args[0] == "voucher" {
		// voucher show takes its flags before the code.
		full = append(slices.Clone(args[:2]), append([]string{"--dir", g.mintDir}, args[2:]...)...)
	}
	cmd := exec.Command(g.bin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	require.NoError(g.t, cmd.Start())
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return stdout.String(), stderr.String(), err
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		g.t.Fatalf("scrip %v did not finish within 60s", args)
	}
	return "", "", nil
}

// cliRetry runs a command like cli, again while it fails because a
// restarted peer's address is still in libp2p's dial backoff (a few
// seconds after a failed dial), as a user would.
func (g *crashGrid) cliRetry(args ...string) (string, string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, stderr, err := g.cli(args...)
		if err == nil || !strings.Contains(stderr, "dial backoff") || time.Now().After(deadline) {
			return out, stderr, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// walletInfo returns the client node's wallet balances.
func (g *crashGrid) walletInfo() node.WalletInfo {
	g.t.Helper()
	out, stderr, err := g.cli("wallet", "--json")
	require.NoError(g.t, err, stderr)
	var wi node.WalletInfo
	require.NoError(g.t, json.Unmarshal([]byte(out), &wi))
	return wi
}

// put uploads file and returns its capability.
func (g *crashGrid) put(file string) (string, error) {
	out, stderr, err := g.cliRetry("put", "-q", file)
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr))
	}
	return strings.TrimSpace(out), nil
}

// checkGet downloads capability and compares it with want.
func (g *crashGrid) checkGet(capability string, want []byte) {
	g.t.Helper()
	out := filepath.Join(g.root, "got")
	_, stderr, err := g.cli("get", "-q", capability, "-o", out)
	require.NoError(g.t, err, stderr)
	b, err := os.ReadFile(out)
	require.NoError(g.t, err)
	require.True(g.t, bytes.Equal(want, b), "downloaded bytes differ from the upload")
}

func (g *crashGrid) voucher(amount uint64) string {
	out, stderr, err := g.cli("voucher", "new", "--amount", strconv.FormatUint(amount, 10))
	require.NoError(g.t, err, stderr)
	return strings.TrimSpace(out)
}

// pendingAt reads server i's pending coins from its metrics.
func (g *crashGrid) pendingAt(i int) (int, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+g.serverMetrics[i]+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	// The endpoint wants the token of the server's directory.
	if tok, err := os.ReadFile(filepath.Join(g.serverDirs[i], node.MetricsTokenFile)); err == nil {
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^scrip_server_deposit_pending_coins (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no pending gauge")
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	return int(v), err
}

// cliResult is the outcome of a scrip command run by cliAsync.
type cliResult struct {
	stdout, stderr string
	err            error
}

// cliAsync runs a one-shot scrip command against the client node, as cli
// does, in the background, and sends its outcome on the channel it
// returns. The command is killed after 90 s.
func (g *crashGrid) cliAsync(args ...string) <-chan cliResult {
	out := make(chan cliResult, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	g.t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, g.bin, append(slices.Clone(args), "--dir", g.clientDir)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	go func() {
		err := cmd.Run()
		out <- cliResult{stdout.String(), stderr.String(), err}
	}()
	return out
}

// pendingRequests returns the requests whose coins server i holds pending
// deposit (from a copy; the server must not be running).
func (g *crashGrid) pendingRequests(i int) [][16]byte {
	g.t.Helper()
	s, err := spentset.Open(g.copyFile(filepath.Join(g.serverDirs[i], node.ServerSpentFile)))
	require.NoError(g.t, err)
	defer s.Close()
	pending, err := s.PendingDeposits(context.Background(), protocol.MaxDepositCoins)
	require.NoError(g.t, err)
	var ids [][16]byte
	for _, d := range pending {
		if !slices.Contains(ids, d.RequestID) {
			ids = append(ids, d.RequestID)
		}
	}
	return ids
}

// lookupRequest returns server i's record of request id (from a copy; the
// server must not be running).
func (g *crashGrid) lookupRequest(i int, id [16]byte) *protocol.SpentRequest {
	g.t.Helper()
	s, err := spentset.Open(g.copyFile(filepath.Join(g.serverDirs[i], node.ServerSpentFile)))
	require.NoError(g.t, err)
	defer s.Close()
	rec, err := s.Lookup(context.Background(), id)
	require.NoError(g.t, err)
	return rec
}

// waitDeposited waits until servers from to to−1 have no coin pending.
func (g *crashGrid) waitDeposited(from, to int) {
	g.t.Helper()
	require.Eventually(g.t, func() bool {
		for i := from; i < to; i++ {
			if n, err := g.pendingAt(i); err != nil || n != 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "servers %d to %d deposit all their coins", from, to-1)
}

// copyFile copies a store to a scratch file, so that the checks read it
// without writing to the original or taking its lock.
func (g *crashGrid) copyFile(path string) string {
	g.t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(g.t, err)
	dst := filepath.Join(g.t.TempDir(), filepath.Base(path))
	require.NoError(g.t, os.WriteFile(dst, b, 0o600))
	return dst
}

// spentStats reads the counters of server i's spent set (from a copy; the
// server must not be running).
func (g *crashGrid) spentStats(i int) spentset.Stats {
	g.t.Helper()
	s, err := spentset.Open(g.copyFile(filepath.Join(g.serverDirs[i], node.ServerSpentFile)))
	require.NoError(g.t, err)
	defer s.Close()
	st, err := s.Stats(context.Background())
	require.NoError(g.t, err)
	return st
}

// TestCrashRecovery kills each role with SIGKILL at its critical points,
// restarts it and checks that the work finishes and that value balances.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the scrip command and kills its processes")
	}
	start := time.Now()
	bin, err := roleBinary()
	require.NoError(t, err)
	const nServers = 5
	root := t.TempDir()
	g := &crashGrid{
		t: t, bin: bin, root: root,
		announce:      filepath.Join(root, "grid.json"),
		mintDir:       filepath.Join(root, "mint"),
		mintListen:    fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t)),
		clientDir:     filepath.Join(root, "client"),
		serverIDs:     make([]peer.ID, nServers),
		servers:       make([]*crashProc, nServers),
		serverDirs:    make([]string, nServers),
		serverListens: make([]string, nServers),
		serverMetrics: make([]string, nServers),
	}
	for i := range nServers {
		g.serverDirs[i] = filepath.Join(root, fmt.Sprintf("s%d", i))
		g.serverListens[i] = fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))
		g.serverMetrics[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	}
	var vouchers []string // every voucher made, to total the funding charged

	// (c) The mint dies in WithdrawFinish before its commit, then (after
	// a restart) right after it, before answering.
	g.startMint("mint/issue/before-commit")
	for i := range nServers {
		crash := ""
		if i == 0 {
			crash = "server/after-record" // for (b)
		}
		g.startServer(i, crash)
	}
	g.startClient("")
	const fund = 200_000
	v1 := g.voucher(fund)
	vouchers = append(vouchers, v1)
	_, stderr, err := g.cli("wallet", "fund", v1)
	require.Error(t, err, "the mint died before answering")
	t.Logf("fund with the mint killed before its commit: %s", strings.TrimSpace(stderr))
	g.waitKilled(g.mint, "mint at mint/issue/before-commit")
	g.startMint("mint/issue/after-commit")
	out, _, err := g.cli("voucher", "show", v1)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("%d of %d msat left\n", fund, fund), out, "nothing charged for an uncommitted withdrawal")
	_, stderr, err = g.cliRetry("wallet", "fund", v1)
	require.Error(t, err, "the mint died after its commit, before answering")
	t.Logf("fund with the mint killed after its commit: %s", strings.TrimSpace(stderr))
	g.waitKilled(g.mint, "mint at mint/issue/after-commit")
	g.startMint("")
	// The mint committed (and charged) some of the withdrawal's batches
	// before it died: what is left on the voucher says how much.
	out, _, err = g.cli("voucher", "show", v1)
	require.NoError(t, err)
	var left, total uint64
	_, err = fmt.Sscanf(out, "%d of %d msat left", &left, &total)
	require.NoError(t, err, out)
	require.Less(t, left, uint64(fund), "the committed withdrawal charged the voucher")
	charged := fund - left
	// The client node, killed at an arbitrary moment and started again,
	// finishes the committed withdrawal from the mint's stored answers and
	// forgets the one the mint never committed.
	g.kill(g.client, "client")
	g.startClient("")
	wi := g.walletInfo()
	require.Equal(t, charged, wi.Balance.Unspent, "the wallet holds what the voucher was charged")
	require.Zero(t, wi.Balance.Pending, "no withdrawal left pending")
	// The rest of the voucher, then nothing more.
	_, stderr, err = g.cliRetry("wallet", "fund", v1)
	require.NoError(t, err, stderr)
	wi = g.walletInfo()
	require.Equal(t, uint64(fund), wi.Balance.Unspent, "the wallet holds the voucher's whole value")
	_, stderr, err = g.cli("wallet", "fund", v1)
	require.Error(t, err)
	require.Contains(t, stderr, "voucher already spent", "the voucher is charged once")
	out, _, err = g.cli("voucher", "show", v1)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("0 of %d msat left\n", fund), out)

	// (b) Server 0, started with its crash point armed, dies after
	// recording the coins of its first paid call, before serving it.
	data2 := make([]byte, 200_000)
	rand.Read(data2)
	file2 := filepath.Join(root, "two.bin")
	require.NoError(t, os.WriteFile(file2, data2, 0o600))
	cap2, put2Err := g.put(file2)
	t.Logf("upload while server 0 dies mid-call: err=%v", put2Err)
	g.waitKilled(g.servers[0], "server 0 at server/after-record")
	// Its spent set, read while it is down: the coins of the call it died
	// in are recorded and pending deposit.
	s0 := g.spentStats(0)
	require.NotZero(t, s0.Pending, "the coins recorded before the kill are durable")
	s0Recorded := s0.PendingValue + s0.CreditedValue + s0.LostValue
	t.Logf("server 0 after its crash: %+v", s0)

	// (d) The mint dies inside Deposit before its commit, then after it.
	// Once the other servers have deposited everything, only server 0,
	// down with its coins pending, has deposits to make: it is the one
	// that hits the points, when it comes back.
	g.waitDeposited(1, nServers)
	g.kill(g.mint, "mint")
	g.startMint("mint/deposit/before-commit")
	g.startServer(0, "")
	g.waitKilled(g.mint, "mint at mint/deposit/before-commit")
	g.kill(g.servers[0], "server 0") // keep its coins pending for the next point
	g.startMint("mint/deposit/after-commit")
	g.startServer(0, "")
	g.waitKilled(g.mint, "mint at mint/deposit/after-commit")
	g.startMint("")

	// (a) The client node dies after placing its third share; started
	// again, it uploads the same file. It is first killed by PID at an
	// arbitrary moment and started with the crash point armed (a fresh
	// start also dials every server again).
	g.kill(g.client, "client")
	g.startClient("client/put/after-share@3")
	data1 := make([]byte, 300_000)
	rand.Read(data1)
	file1 := filepath.Join(root, "one.bin")
	require.NoError(t, os.WriteFile(file1, data1, 0o600))
	_, err = g.put(file1)
	require.Error(t, err, "the client node died mid-upload")
	g.waitKilled(g.client, "client at client/put/after-share@3")
	g.startClient("")
	cap1, err := g.put(file1)
	require.NoError(t, err)
	g.checkGet(cap1, data1)

	// Everything works again: the upload of (b) is finished (or done
	// again) and read back, and every server deposits all it holds.
	if put2Err != nil {
		cap2, err = g.put(file2)
		require.NoError(t, err)
	}
	g.checkGet(cap2, data2)
	g.waitDeposited(0, nServers)

	// (e) Server 1, started again with the crash point armed, dies after
	// recording the coins of an upload's Allocate, before serving it, and
	// is started again at once on the same directory, identity and
	// address. The client node got no answer: it sends the same request
	// (same ID, body and spends) again, with a growing wait, until the
	// server is back, which serves it on the credit of the recorded
	// coins. The upload finishes with server 1's share, paid once.
	g.stopProc(g.servers[1], "server 1")
	g.startServer(1, "server/after-record")
	_, stderr, err = g.cliRetry("wait-until-connected", "--min", strconv.Itoa(nServers), "--timeout", "20s")
	require.NoError(t, err, stderr)
	data3 := make([]byte, 150_000)
	rand.Read(data3)
	file3 := filepath.Join(root, "three.bin")
	require.NoError(t, os.WriteFile(file3, data3, 0o600))
	put3 := g.cliAsync("put", "-q", "--report", file3)
	g.waitKilled(g.servers[1], "server 1 at server/after-record")
	crashed := g.pendingRequests(1)
	require.Len(t, crashed, 1, "server 1 recorded the coins of one request before it died")
	// Down for a second, as under a supervisor that restarts it after a
	// pause: longer than a client that retried only at once would wait.
	time.Sleep(time.Second)
	restart := time.Now()
	g.startServer(1, "")
	t.Logf("server 1 started again in %v, after a second down", time.Since(restart).Round(time.Millisecond))
	res3 := <-put3
	require.NoError(t, res3.err, "the upload finishes once server 1 serves the retry: %s", res3.stderr)
	cap3 := strings.TrimSpace(res3.stdout)
	var rep3 node.PutReport
	at := strings.Index(res3.stderr, "{")
	require.GreaterOrEqual(t, at, 0, "no report: %s", res3.stderr)
	require.NoError(t, json.Unmarshal([]byte(res3.stderr[at:]), &rep3), res3.stderr)
	var allocs3 []node.CallReport
	for _, c := range rep3.Calls {
		if c.Op == "allocate" && c.Server == g.serverIDs[1].String() {
			allocs3 = append(allocs3, c)
		}
	}
	require.Len(t, allocs3, 1, "one Allocate call to server 1: its retry was the same request")
	require.Empty(t, allocs3[0].Error)
	require.Zero(t, rep3.Unknown, "every paid call of the upload was answered")
	require.True(t, slices.ContainsFunc(rep3.Shares, func(s node.PutShare) bool { return s.Server == g.serverIDs[1].String() }),
		"server 1 holds a share of the upload")
	g.checkGet(cap3, data3)
	g.waitDeposited(0, nServers)

	// All stop; the stores are read from copies.
	g.stopProc(g.client, "client")
	for i := range nServers {
		g.stopProc(g.servers[i], fmt.Sprintf("server %d", i))
	}
	g.stopProc(g.mint, "mint")
	st0 := g.spentStats(0)
	require.GreaterOrEqual(t, st0.CreditedValue, s0Recorded, "server 0's coins recorded before its crash were credited later")
	// Server 1 answered the request it died in, on the credit of the
	// coins recorded then: what the client paid for its Allocate, once.
	rec := g.lookupRequest(1, crashed[0])
	require.True(t, rec.Answered, "server 1 stored the answer of the request it died in")
	require.Equal(t, allocs3[0].Cost, rec.Value, "the client paid once what server 1 recorded before it died")
	r := g.reconcile(vouchers)
	t.Logf("reconciliation (msat): %s", r)
	t.Logf("crash test took %v", time.Since(start).Round(time.Millisecond))
}

// reconciliation holds the figures of the value check, in msat.
type reconciliation struct {
	// From the mint's store.
	Charged   uint64 // funding charged: Σ over vouchers of value − remaining
	Withdrawn uint64 // Σ Audit Withdrawn × amount
	SwapOut   uint64 // Σ Audit SwapOut × amount: coins issued by Swap
	SwapIn    uint64 // Σ Audit SwapIn × amount: coins spent at the mint by Swap
	Deposited uint64 // Σ Audit Deposited × amount
	Balances  uint64 // Σ over servers of the mint's balance for them
	// From the servers' spent sets (Stats).
	Recorded uint64 // Σ PendingValue + CreditedValue + LostValue
	Credited uint64 // Σ CreditedValue
	Pending  uint64 // Σ PendingValue
	Lost     uint64 // Σ LostValue
	// From the wallet, each coin in exactly one class.
	WalletAll      uint64 // every coin the wallet stores, in any state
	WalletHeld     uint64 // unspent, reserved or bound, and recorded by no server
	WalletRecorded uint64 // recorded by a server (reserved or spent in the wallet)
	WalletSwapped  uint64 // spent in the wallet and recorded by no server: spent at the mint
	WalletPending  uint64 // withdrawals not finished
}

func (r reconciliation) String() string {
	type plain reconciliation // without this method
	return fmt.Sprintf("%+v", plain(r))
}

// reconcile reads the stores of the stopped processes and checks that
// value is neither lost nor counted twice:
//
//	Charged = Withdrawn
//	Withdrawn = WalletHeld + Recorded + (SwapIn − SwapOut)
//	Recorded = Credited + Pending, Lost = 0
//	Credited = Deposited = Balances
//
// The wallet's coins are partitioned, each coin in one class: recorded by
// a server (looked up by public key in every spent set, whatever its
// wallet state: a coin reserved for a call the server recorded before
// dying counts there, not in the wallet), else held by the wallet
// (unspent, reserved or bound), else spent at the mint (a spent coin no
// server holds was swapped). The classes are checked against the servers'
// and the mint's own counters: WalletRecorded = Recorded, WalletSwapped =
// SwapIn, WalletAll = Withdrawn + SwapOut (every coin the mint issued
// reached the wallet once).
func (g *crashGrid) reconcile(vouchers []string) reconciliation {
	t := g.t
	t.Helper()
	ctx := context.Background()
	var r reconciliation

	ms, err := mintstore.Open(g.copyFile(filepath.Join(g.mintDir, node.MintStoreFile)))
	require.NoError(t, err)
	defer ms.Close()
	require.NoError(t, ms.Check(ctx))
	for _, v := range vouchers {
		a, err := ms.FundingAccount(ctx, protocol.VoucherID(v))
		require.NoError(t, err)
		r.Charged += a.Value - a.Remaining
	}
	audit, err := ms.Audit(ctx)
	require.NoError(t, err)
	for _, e := range audit {
		require.False(t, e.Overspent, "audit: overspent key %x/%d", e.KeysetID[:4], e.Amount)
		require.Zero(t, e.Recouped)
		r.Withdrawn += e.Withdrawn * e.Amount
		r.SwapOut += e.SwapOut * e.Amount
		r.SwapIn += e.SwapIn * e.Amount
		r.Deposited += e.Deposited * e.Amount
	}

	// Per server: its counters, the mint's balance for it, and which of
	// the wallet's coins it recorded.
	w, err := wallet.Open(g.copyFile(filepath.Join(g.clientDir, node.ClientWalletFile)), g.walletMint())
	require.NoError(t, err)
	defer w.Close()
	coins, err := w.Coins(ctx)
	require.NoError(t, err)
	pubs := make([][32]byte, len(coins))
	for i, c := range coins {
		pubs[i] = c.Coin.Pub
	}
	recordedBy := make([]int, len(coins))
	for i := range g.servers {
		ss, err := spentset.Open(g.copyFile(filepath.Join(g.serverDirs[i], node.ServerSpentFile)))
		require.NoError(t, err)
		st, err := ss.Stats(ctx)
		require.NoError(t, err)
		r.Recorded += st.PendingValue + st.CreditedValue + st.LostValue
		r.Credited += st.CreditedValue
		r.Pending += st.PendingValue
		r.Lost += st.LostValue
		infos, err := ss.Coins(ctx, pubs)
		require.NoError(t, err)
		for j, in := range infos {
			if in.State != spentset.CoinUnknown {
				recordedBy[j]++
			}
		}
		require.NoError(t, ss.Close())
		bal, err := ms.Balance(ctx, g.serverIDs[i])
		require.NoError(t, err)
		var credited uint64
		for _, b := range bal {
			credited += b.Amount
		}
		require.Equal(t, st.CreditedValue, credited, "server %d: credited in its spent set = its balance at the mint", i)
		r.Balances += credited
	}
	for j, c := range coins {
		require.LessOrEqual(t, recordedBy[j], 1, "coin %x recorded by %d servers", c.Coin.Pub[:4], recordedBy[j])
		a := c.Coin.Amount
		r.WalletAll += a
		switch {
		case recordedBy[j] == 1:
			require.Contains(t, []wallet.State{wallet.Reserved, wallet.Spent}, c.State, "a recorded coin has left the wallet")
			r.WalletRecorded += a
		case c.State == wallet.Spent:
			r.WalletSwapped += a
		default:
			r.WalletHeld += a
		}
	}
	bal, err := w.Balance(ctx)
	require.NoError(t, err)
	r.WalletPending = bal.Pending

	require.Zero(t, r.WalletPending, "no withdrawal left pending")
	require.Zero(t, r.Lost, "no coin refused or expired")
	require.Equal(t, r.Charged, r.Withdrawn, "funding charged = value withdrawn")
	require.Equal(t, r.Withdrawn+r.SwapOut, r.WalletAll, "every coin issued reached the wallet, once")
	require.Equal(t, r.Recorded, r.WalletRecorded, "the servers recorded only the wallet's coins, each once")
	require.Equal(t, r.SwapIn, r.WalletSwapped, "the spent coins no server holds are those swapped at the mint")
	require.Equal(t, r.Withdrawn+r.SwapOut, r.WalletHeld+r.Recorded+r.SwapIn,
		"withdrawn = held + recorded by servers + swapped away (SwapIn − SwapOut)")
	require.Equal(t, r.Recorded, r.Credited+r.Pending, "recorded by servers = credited + pending")
	require.Equal(t, r.Credited, r.Deposited, "each coin credited once")
	require.Equal(t, r.Deposited, r.Balances)
	return r
}

// walletMint returns the mint the client's wallet belongs to.
func (g *crashGrid) walletMint() wallet.Mint {
	m, err := cliWalletMint(g.clientDir, "")
	require.NoError(g.t, err)
	return m
}
