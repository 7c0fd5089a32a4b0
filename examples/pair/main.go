// Command pair runs the smallest scrip grid in one process: a mint, one
// storage server and one client node, all on 127.0.0.1 in a temporary
// directory. The client withdraws coins paid by a voucher, uploads a
// small file to the server, paying for the call, downloads it, paying
// again, and checks that it got the same bytes back. The server then
// deposits the coins it took and asks the mint what it was credited.
//
// Run it with:
//
//	go run ./examples/pair
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/scripnet/scrip/node"
	"github.com/scripnet/scrip/protocol"
)

// voucherValue is what the voucher is worth, in the mint's unit (msat).
const voucherValue = 100_000

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pair:", err)
		os.Exit(1)
	}
}

// run runs the example and writes its transcript to w.
func run(ctx context.Context, w io.Writer) (err error) {
	dir, err := os.MkdirTemp("", "scrip-pair-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)

	// The mint. Its announcement (peer ID and addresses) is all the
	// others need: the key in its peer ID signs its keysets.
	mint, err := node.NewMint(ctx, node.MintConfig{Dir: filepath.Join(dir, "mint"), Logger: quiet})
	if err != nil {
		return err
	}
	defer mint.Close()
	fmt.Fprintf(w, "mint     %s  unit %s\n", short(mint.Announcement().ID), mint.Unit())

	// One storage server, taking the mint's coins, with the default
	// pricing agent.
	server, err := node.NewServer(ctx, node.ServerConfig{
		Dir:      filepath.Join(dir, "server"),
		Capacity: 1 << 30,
		Mint:     mint.Announcement(),
		Logger:   quiet,
	})
	if err != nil {
		return err
	}
	defer server.Close()
	sched, _, err := server.Prices().Current(time.Now())
	if err != nil {
		return err
	}
	rates := sched.Rates
	fmt.Fprintf(w, "server   %s  per call %d, store %d/GiB·month, read %d/GiB, write %d/GiB\n",
		short(server.Announcement().ID), rates.PerCall, rates.StorePerGiBMonth, rates.ReadPerGiB, rates.WritePerGiB)

	// The client finds the mint and the server in an announcements file.
	announce := filepath.Join(dir, "announce.json")
	for _, a := range []node.Announcement{mint.Announcement(), server.Announcement()} {
		if err := node.WriteAnnouncement(announce, a); err != nil {
			return err
		}
	}
	// One server: one share, which alone recovers the file.
	client, err := node.NewClient(ctx, node.ClientConfig{
		Dir:         filepath.Join(dir, "client"),
		Announce:    announce,
		NoAPI:       true,
		K:           1,
		Happy:       1,
		N:           1,
		PoolServers: -1,
		Tick:        time.Hour,
		Logger:      quiet,
	})
	if err != nil {
		return err
	}
	defer client.Close()
	if _, err := client.WaitConnected(ctx, 1); err != nil {
		return fmt.Errorf("connecting to the server: %w", err)
	}

	// A voucher, as the mint's operator would sell it, and the coins it
	// pays for, blind-signed by the mint.
	voucher, err := mint.CreateVoucher(ctx, "", voucherValue)
	if err != nil {
		return err
	}
	fund, err := client.Fund(ctx, voucher, voucherValue)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nfund     voucher of %d %s: withdrew %d coins worth %d %s\n",
		uint64(voucherValue), fund.Unit, fund.Coins, fund.Withdrawn, fund.Unit)

	// A paid upload.
	file := bytes.Repeat([]byte("scrip pays per call. "), 200)
	capability, put, err := client.Put(ctx, bytes.NewReader(file))
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	fmt.Fprintf(w, "\nupload   %d bytes as %d share of %d bytes (k=%d, happy=%d, N=%d)\n",
		put.Size, put.N, put.ShareSize, put.K, put.Happy, put.N)
	for _, c := range put.Calls {
		fmt.Fprintf(w, "  call   %-8s shares %v  cost %d %s\n", c.Op, c.Shares, c.Cost, put.Unit)
	}
	fmt.Fprintf(w, "  total  %d %s\n", put.Total, put.Unit)

	// A paid download.
	var got bytes.Buffer
	get, err := client.Get(ctx, capability, &got)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	fmt.Fprintf(w, "\ndownload %d bytes from %d server\n", get.Size, get.Asked)
	// GetReport has the download's total only; the calls it made, one
	// List and one Read of the share, are quoted here from the rates.
	list, err := protocol.Quote(rates, protocol.Usage{})
	if err != nil {
		return err
	}
	read, err := protocol.Quote(rates, protocol.Usage{ReadBytes: put.ShareSize})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  call   %-8s shares %v  cost %d %s (quoted)\n", "list", []int{}, list, get.Unit)
	fmt.Fprintf(w, "  call   %-8s shares %v  cost %d %s (quoted)\n", "read", []int{0}, read, get.Unit)
	fmt.Fprintf(w, "  total  %d %s\n", get.Total, get.Unit)
	if !bytes.Equal(got.Bytes(), file) {
		return errors.New("the file downloaded differs from the file uploaded")
	}
	fmt.Fprintf(w, "  check  the %d bytes downloaded are the bytes uploaded\n", got.Len())

	// Balances: the client's wallet, and the server's at the mint once
	// it has deposited the coins it took.
	bal, err := client.Wallet().Balance(ctx)
	if err != nil {
		return err
	}
	if _, err := server.DepositNow(ctx); err != nil {
		return fmt.Errorf("deposit: %w", err)
	}
	credited, err := server.Balance(ctx)
	if err != nil {
		return err
	}
	var earned uint64
	for _, a := range credited {
		if a.Unit == put.Unit {
			earned += a.Amount
		}
	}
	paid := put.Total + get.Total
	fmt.Fprintf(w, "\nbalances\n")
	fmt.Fprintf(w, "  client wallet       %6d %s unspent (withdrew %d, paid %d)\n", bal.Unspent, put.Unit, fund.Withdrawn, paid)
	fmt.Fprintf(w, "  server at the mint  %6d %s after deposit\n", earned, put.Unit)
	if earned != paid {
		return fmt.Errorf("the server was credited %d %s but the client paid %d", earned, put.Unit, paid)
	}
	if bal.Unspent+paid != fund.Withdrawn {
		return fmt.Errorf("the wallet holds %d %s, not the %d withdrawn less the %d paid", bal.Unspent, put.Unit, fund.Withdrawn, paid)
	}
	fmt.Fprintf(w, "  check  credited = paid = withdrawn − unspent = %d %s\n", paid, put.Unit)
	return nil
}

// short abbreviates a peer ID to its last 6 characters.
func short(id string) string {
	if len(id) > 6 {
		return "…" + id[len(id)-6:]
	}
	return id
}
