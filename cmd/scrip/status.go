package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/scripnet/scrip/node"
)

func init() {
	register(command{name: "status", summary: "show the client node: servers, wallet, prices", run: runStatus})
}

func runStatus(ctx context.Context, args []string) error {
	fs, dir := cliFlags("status")
	asJSON := fs.Bool("json", false, "print JSON")
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
	var st node.ClientStatus
	if err := n.call(ctx, http.MethodGet, "/status", nil, &st); err != nil {
		return err
	}
	var servers []node.ServerInfo
	if err := n.call(ctx, http.MethodGet, "/servers?t=json", nil, &servers); err != nil {
		return err
	}
	if *asJSON {
		return cliPrintJSON(struct {
			Status  node.ClientStatus `json:"status"`
			Servers []node.ServerInfo `json:"servers"`
		}{st, servers})
	}
	mint := "connected"
	if !st.Mint.Connected {
		mint = "not connected"
	}
	fmt.Fprintf(cliStdout, "node     %s (this session)\n", st.Peer)
	fmt.Fprintf(cliStdout, "mint     %s, %s, %d keysets\n", st.Mint.Peer, mint, st.Mint.Keysets)
	fmt.Fprintf(cliStdout, "wallet   %d %s unspent, %d reserved, %d bound, %d pending\n", st.Wallet.Unspent, st.Unit, st.Wallet.Reserved, st.Wallet.Bound, st.Wallet.Pending)
	fmt.Fprintf(cliStdout, "servers  %d connected of %d known, %d penalised; uploads need %d (k=%d, n=%d)\n",
		st.Servers.Connected, st.Servers.Known, st.Servers.Penalised, st.Happy, st.K, st.N)
	if c := st.Ceiling; c != nil {
		fmt.Fprintf(cliStdout, "ceiling  per call %d, store %d/GiB-month, read %d/GiB, write %d/GiB %s\n", c.PerCall, c.StorePerGiBMonth, c.ReadPerGiB, c.WritePerGiB, st.Unit)
	}
	fmt.Fprintf(cliStdout, "spent    %d %s this session\n", st.Spent, st.Unit)
	for _, s := range servers {
		state := "down"
		if s.Connected {
			state = "up"
		}
		price := "no prices"
		if s.Schedule != nil {
			price = fmt.Sprintf("call %d, store %d, read %d, write %d", s.Schedule.Rates.PerCall, s.Schedule.Rates.StorePerGiBMonth,
				s.Schedule.Rates.ReadPerGiB, s.Schedule.Rates.WritePerGiB)
		}
		flag := ""
		if s.Penalised {
			flag = "  penalised"
		}
		fmt.Fprintf(cliStdout, "  %s  %-4s  score %5.2f  %s%s\n", s.Peer, state, s.Score, price, flag)
	}
	return nil
}
