package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/scripnet/scrip/node"
)

// The client node and the way the other client commands reach it: each
// command finds the running node through the "api" and "api.token" files
// of the client directory (--dir, default $SCRIP_DIR or ~/.scrip/client)
// and calls its local HTTP API.

func init() {
	register(command{name: "client", summary: "run the client node (wallet, connections, local API)", run: runClient})
}

// cliStdout is where the commands print their results, and cliStdin
// where they read secrets given as "-"; tests replace them.
var (
	cliStdout io.Writer = os.Stdout
	cliStdin  io.Reader = os.Stdin
)

// errNoNode is the one line for a CLI command run without a client node.
var errNoNode = errors.New("no client node running: start one with `scrip client`")

// cliDefaultDir returns $SCRIP_DIR, or ~/.scrip/client.
func cliDefaultDir() string {
	if d := os.Getenv("SCRIP_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".scrip", "client")
	}
	return filepath.Join(home, ".scrip", "client")
}

// cliFlags returns a flag set for command name with the --dir flag.
func cliFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("scrip "+name, flag.ContinueOnError)
	dir := fs.String("dir", cliDefaultDir(), "client directory (default $SCRIP_DIR or ~/.scrip/client)")
	return fs, dir
}

// cliParse parses args with flags and positional arguments in any order
// and returns the positional ones.
func cliParse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func runClient(ctx context.Context, args []string) error {
	fs, dir := cliFlags("client")
	announce := fs.String("announce", os.Getenv("SCRIP_ANNOUNCE"), "announcements file naming the mint and the servers (default $SCRIP_ANNOUNCE)")
	api := fs.String("api", node.DefaultClientAPI, "listen address of the local HTTP API (loopback only)")
	listen := fs.String("listen", "", "comma-separated libp2p addresses to listen on (default: none, dial out only)")
	k := fs.Int("k", 0, "shares needed to read a file (default 3)")
	happy := fs.Int("happy", 0, "distinct servers an upload must reach (default 7)")
	n := fs.Int("n", 0, "shares made of each file (default 10)")
	lease := fs.Duration("lease", 0, "how long uploads are paid for (default 720h)")
	upBudget := fs.Uint64("budget-upload", 0, "most one upload may cost, in the mint's unit (default: no bound)")
	downBudget := fs.Uint64("budget-download", 0, "most one download may cost (default: no bound)")
	totalBudget := fs.Uint64("budget-total", 0, "most all payments of this session may cost (default: no bound)")
	metrics := metricsFlags(fs)
	verbose := fs.Bool("v", false, "log more")
	pos, err := cliParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	if err := metrics.check(); err != nil {
		return err
	}
	if *announce == "" {
		return fmt.Errorf("%w: --announce FILE is required", errUsage)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg := node.ClientConfig{
		Dir:      *dir,
		Announce: *announce,
		API:      *api,
		K:        *k, Happy: *happy, N: *n,
		Lease:  *lease,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	cfg.Budget.Upload, cfg.Budget.Download, cfg.Budget.Total = *upBudget, *downBudget, *totalBudget
	if *listen != "" {
		cfg.ListenAddrs = strings.Split(*listen, ",")
	}
	if c, err := cliConnect(*dir); err == nil {
		if err := c.call(ctx, http.MethodGet, "/status", nil, nil); err == nil {
			return fmt.Errorf("a client node is already running for %s at %s", *dir, c.url)
		}
	}
	cl, err := node.NewClient(ctx, cfg)
	if err != nil {
		return err
	}
	me, err := metrics.start(*dir, cl.Registry())
	if err != nil {
		cl.Close()
		return oneLine(err)
	}
	fmt.Fprintf(cliStdout, "scrip client: API on %s\n", cl.APIURL())
	if me != nil {
		fmt.Fprintf(cliStdout, "scrip client: metrics on %s/metrics\n", me.URL())
	}
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "scrip client: stopping")
	if me != nil {
		me.Close()
	}
	return cl.Close()
}

// cliNode is a running client node, as the CLI reaches it.
type cliNode struct {
	dir   string
	url   string
	token string
	http  *http.Client
}

// cliConnect finds the client node of dir.
func cliConnect(dir string) (*cliNode, error) {
	u, err := os.ReadFile(filepath.Join(dir, node.ClientAPIFile))
	if err != nil {
		return nil, errNoNode
	}
	tok, err := os.ReadFile(filepath.Join(dir, node.ClientTokenFile))
	if err != nil {
		return nil, fmt.Errorf("cannot read the client node's token: %w", err)
	}
	apiURL := strings.TrimRight(strings.TrimSpace(string(u)), "/")
	if !cliLoopbackURL(apiURL) {
		// The API listens on loopback only: whatever else the file says,
		// the token does not go there.
		return nil, fmt.Errorf("%s names %q, not a loopback http:// address: is it the file a client node wrote?",
			filepath.Join(dir, node.ClientAPIFile), apiURL)
	}
	return &cliNode{dir: dir, url: apiURL, token: strings.TrimSpace(string(tok)), http: node.NewLocalHTTPClient(0)}, nil
}

// cliLoopbackURL reports whether s is http://HOST:PORT with HOST
// localhost or a loopback IP literal, and nothing else.
func cliLoopbackURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Port() == "" {
		return false
	}
	if h := u.Hostname(); h == "localhost" {
		return true
	} else if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return true
	}
	return false
}

// request sends one call and returns the answer if it is a success; an
// error answer becomes its one line.
func (n *cliNode) request(ctx context.Context, method, path string, body io.Reader, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, n.url+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := n.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, errNoNode
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("the client node at %s did not answer: %w", n.url, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, cliAPIError(resp)
	}
	return resp, nil
}

// cliAPIError turns an error answer into its one line.
func cliAPIError(resp *http.Response) error {
	var e node.APIError
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	return fmt.Errorf("the client node answered %s", resp.Status)
}

// call sends one call with a JSON body (if in is not nil) and decodes the
// JSON answer into out (if not nil).
func (n *cliNode) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	h := http.Header{}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
		h.Set("Content-Type", "application/json")
	}
	resp, err := n.request(ctx, method, path, body, h)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("the client node's answer does not parse: %w", err)
	}
	return nil
}

// cliStderrIsTerminal reports whether standard error is a terminal, where
// progress bars go.
func cliStderrIsTerminal() bool {
	fi, err := os.Stderr.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
