package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

func init() {
	register(command{name: "wait-until-connected", summary: "wait until the client node reaches N servers: --min N --timeout 30s", run: runWait})
}

func runWait(ctx context.Context, args []string) error {
	fs, dir := cliFlags("wait-until-connected")
	minServers := fs.Int("min", 1, "servers to wait for")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait")
	pos, err := cliParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	n, err := cliConnect(*dir)
	if err != nil {
		return err
	}
	q := url.Values{"min": {strconv.Itoa(*minServers)}, "timeout": {timeout.String()}}
	var out struct{ Connected int }
	if err := n.call(ctx, http.MethodGet, "/wait?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	fmt.Fprintf(cliStdout, "%d servers connected\n", out.Connected)
	return nil
}
