// Command grid runs a small scrip grid in one process: a mint, twelve
// storage servers that price their space differently, and a client node,
// all on 127.0.0.1 in a temporary directory. The client uploads a file
// (1 MiB of random bytes, or the file named on the command line),
// downloads it and checks it; then every server deposits the coins it
// took, and the example checks that what the mint credited the servers
// is what the client paid.
//
// Run it with:
//
//	go run ./examples/grid [file]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/node"
	"github.com/scripnet/scrip/node/pricing"
	"github.com/scripnet/scrip/protocol"
)

// voucherValue is what the client's voucher is worth, in the mint's unit
// (msat): far more than the example spends.
const voucherValue = 1_000_000

// randomSize is the size of the file uploaded when none is named.
const randomSize = 1 << 20

// serverSpec is how one server prices: the base rates of its pricing
// agent, the operator's floor and cap, and the space it offers.
type serverSpec struct {
	base     protocol.Rates
	limits   pricing.Limits
	capacity uint64
	note     string
}

// specs are the twelve servers: rates around pricing.DefaultBase (10 per
// call, 50,000 per GiB·month, 1,000 per GiB read or written), some
// cheaper, some dearer, two held by a floor or a cap.
var specs = []serverSpec{
	{base: rates(10, 50_000, 1_000, 1_000), capacity: 8 << 30, note: "default base"},
	{base: rates(8, 40_000, 800, 800), capacity: 4 << 30, note: "cheaper"},
	{base: rates(12, 60_000, 1_200, 1_200), capacity: 16 << 30, note: "dearer"},
	{base: rates(5, 30_000, 500, 500), capacity: 2 << 30, note: "cheap"},
	{base: rates(20, 90_000, 2_000, 2_000), capacity: 32 << 30, note: "expensive"},
	{base: rates(10, 45_000, 2_500, 500), capacity: 8 << 30, note: "cheap writes, dear reads"},
	{base: rates(10, 55_000, 400, 1_500), capacity: 8 << 30, note: "cheap reads, dear writes"},
	{base: rates(2, 20_000, 1_000, 1_000), capacity: 1 << 30,
		limits: pricing.Limits{Floor: rates(6, 35_000, 0, 0)}, note: "floor 6/call, 35k/GiB·mo"},
	{base: rates(15, 120_000, 1_000, 1_000), capacity: 64 << 30,
		limits: pricing.Limits{Cap: rates(0, 70_000, 0, 0)}, note: "cap 70k/GiB·mo"},
	{base: rates(25, 50_000, 1_000, 1_000), capacity: 8 << 30, note: "dear calls"},
	{base: rates(1, 65_000, 1_000, 1_000), capacity: 8 << 30, note: "cheap calls"},
	{base: rates(10, 150_000, 3_000, 3_000), capacity: 128 << 30, note: "premium"},
}

func rates(call, store, read, write uint64) protocol.Rates {
	return protocol.Rates{PerCall: call, StorePerGiBMonth: store, ReadPerGiB: read, WritePerGiB: write}
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var err error
	switch len(os.Args) {
	case 1:
		err = run(ctx, os.Stdout)
	case 2:
		var data []byte
		if data, err = os.ReadFile(os.Args[1]); err == nil {
			err = runFile(ctx, os.Stdout, filepath.Base(os.Args[1]), data)
		}
	default:
		err = errors.New("usage: grid [file]")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "grid:", err)
		os.Exit(1)
	}
}

// run runs the example on 1 MiB of random bytes and writes its transcript
// to w.
func run(ctx context.Context, w io.Writer) error {
	data := make([]byte, randomSize)
	rand.Read(data)
	return runFile(ctx, w, "1 MiB of random bytes", data)
}

// server is one running server of the grid.
type server struct {
	name  string
	spec  serverSpec
	s     *node.Server
	id    peer.ID
	rates protocol.Rates
}

// runFile runs the example on data, named name in the transcript.
func runFile(ctx context.Context, w io.Writer, name string, data []byte) error {
	start := time.Now()
	dir, err := os.MkdirTemp("", "scrip-grid-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)

	// The mint, and the twelve servers, started together.
	mint, err := node.NewMint(ctx, node.MintConfig{Dir: filepath.Join(dir, "mint"), Logger: quiet})
	if err != nil {
		return err
	}
	defer mint.Close()
	servers := make([]*server, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		wg.Go(func() {
			servers[i], errs[i] = startServer(ctx, filepath.Join(dir, fmt.Sprintf("s%02d", i+1)), i, spec, mint.Announcement(), quiet)
		})
	}
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			defer s.s.Close()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	// The client finds them all in an announcements file.
	announce := filepath.Join(dir, "announce.json")
	if err := node.WriteAnnouncement(announce, mint.Announcement()); err != nil {
		return err
	}
	for _, s := range servers {
		if err := node.WriteAnnouncement(announce, s.s.Announcement()); err != nil {
			return err
		}
	}
	client, err := node.NewClient(ctx, node.ClientConfig{
		Dir:         filepath.Join(dir, "client"),
		Announce:    announce,
		NoAPI:       true,
		PoolServers: -1,
		Tick:        time.Hour,
		Logger:      quiet,
	})
	if err != nil {
		return err
	}
	defer client.Close()
	if n, err := client.WaitConnected(ctx, len(servers)); err != nil {
		return fmt.Errorf("%d of %d servers connected: %w", n, len(servers), err)
	}
	unit := client.Unit()
	tSetup := time.Since(start)
	fmt.Fprintf(w, "a mint (%s, unit %s), %d servers and a client on 127.0.0.1, started in %s\n\n",
		short(mint.Host().ID()), unit, len(servers), round(tSetup))

	// Funding: a voucher, and the coins it pays for.
	voucher, err := mint.CreateVoucher(ctx, "", voucherValue)
	if err != nil {
		return err
	}
	fund, err := client.Fund(ctx, voucher, voucherValue)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "fund: a voucher of %d %s paid for %d coins worth %d %s\n\n",
		uint64(voucherValue), unit, fund.Coins, fund.Withdrawn, unit)

	// Upload.
	t0 := time.Now()
	capability, put, err := client.Put(ctx, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	tPut := time.Since(t0)

	// Download and check.
	t0 = time.Now()
	var got bytes.Buffer
	get, err := client.Get(ctx, capability, &got)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	tGet := time.Since(t0)
	if !bytes.Equal(got.Bytes(), data) {
		return errors.New("the file downloaded differs from the file uploaded")
	}

	// Every server deposits what it took; the mint says what it credited.
	t0 = time.Now()
	credited := make([]uint64, len(servers))
	for i, s := range servers {
		wg.Go(func() {
			if _, errs[i] = s.s.DepositNow(ctx); errs[i] != nil {
				return
			}
			var bal []protocol.UnitAmount
			bal, errs[i] = s.s.Balance(ctx)
			for _, a := range bal {
				if a.Unit == unit {
					credited[i] += a.Amount
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	tDeposit := time.Since(t0)

	// Where the shares went, and what each server was paid.
	var ids []peer.ID
	byID := make(map[string]int)
	for i, s := range servers {
		ids = append(ids, s.id)
		byID[s.id.String()] = i
	}
	si, err := hex.DecodeString(put.StorageIndex)
	if err != nil {
		return err
	}
	ring := protocol.Ring(si, ids)
	pos := make([]int, len(servers))
	for p, id := range ring {
		pos[byID[id.String()]] = p
	}
	held := make([][]int, len(servers))
	for _, sh := range put.Shares {
		i := byID[sh.Server]
		held[i] = append(held[i], sh.Share)
	}
	fetched := make([][]int, len(servers))
	for _, sh := range get.Shares {
		i := byID[sh.Server]
		fetched[i] = append(fetched[i], sh.Share)
	}
	upPaid := make([]uint64, len(servers))
	for _, c := range put.Calls {
		upPaid[byID[c.Server]] += c.Cost
	}

	fmt.Fprintf(w, "upload: %s (%d bytes), k=%d of N=%d shares of %d bytes, on %d servers (happy=%d)\n",
		name, put.Size, put.K, put.N, put.ShareSize, put.Servers, put.Happy)
	fmt.Fprintf(w, "        storage index %s…, lease 30 days, market ceiling %d %s a share\n\n",
		put.StorageIndex[:16], put.Ceiling, unit)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	share := protocol.Usage{StoreBytes: put.ShareSize, StoreSeconds: uint64(node.DefaultLease / time.Second), WriteBytes: put.ShareSize}
	fmt.Fprintln(tw, "ring\tserver\tpeer\tcapacity\tcall\tstore/GiB·mo\tread/GiB\twrite/GiB\tshare quote\tshares put\tshares got\tupload\tdownload\tcredited\t\tpricing\t")
	for _, p := range orderByRing(pos) {
		s := servers[p]
		quote, err := protocol.Quote(s.rates, share)
		if err != nil {
			return err
		}
		q := fmt.Sprint(quote)
		if quote > put.Ceiling {
			q += " >"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t\t%s\t\n",
			pos[p], s.name, short(s.id), gib(s.spec.capacity), s.rates.PerCall, s.rates.StorePerGiBMonth,
			s.rates.ReadPerGiB, s.rates.WritePerGiB, q, list(held[p]), list(fetched[p]),
			upPaid[p], credited[p]-min(credited[p], upPaid[p]), credited[p], s.spec.note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "(rates, quotes and payments in %s. share quote: the price of one share's allocation, \">\" above\n"+
		" the ceiling; upload: paid for allocations; download = credited − upload: paid for Lists and Reads)\n\n", unit)

	// Every call of the upload.
	fmt.Fprintln(w, "upload calls, in the order they ended:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "#\tserver\tcall\tshares\tbytes\tcost\terror\t")
	for n, c := range put.Calls {
		i := byID[c.Server]
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\t\n", n+1, servers[i].name, c.Op, list(c.Shares), c.Bytes, c.Cost, c.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "(allocate is the paid call, priced by storage, write and call rates; writes and closes are free)\n\n")

	fmt.Fprintf(w, "download: %d bytes, shares %s, asking %d servers (List, then Read, each paid); verified equal\n\n",
		get.Size, list(sharesOf(get.Shares)), get.Asked)

	// Totals.
	var revenue uint64
	for _, c := range credited {
		revenue += c
	}
	paid := put.Total + get.Total
	bal, err := client.Wallet().Balance(ctx)
	if err != nil {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "client paid for the upload\t%d\t%s\t\n", put.Total, unit)
	fmt.Fprintf(tw, "client paid for the download\t%d\t%s\t\n", get.Total, unit)
	fmt.Fprintf(tw, "client paid in all\t%d\t%s\t\n", paid, unit)
	fmt.Fprintf(tw, "client wallet: withdrawn − unspent\t%d\t%s\t\n", fund.Withdrawn-bal.Unspent, unit)
	fmt.Fprintf(tw, "servers credited at the mint\t%d\t%s\t\n", revenue, unit)
	if err := tw.Flush(); err != nil {
		return err
	}
	if put.Unknown != 0 || get.Unknown != 0 {
		return fmt.Errorf("%d %s paid in calls that got no answer", put.Unknown+get.Unknown, unit)
	}
	if revenue != paid {
		return fmt.Errorf("MISMATCH: the servers were credited %d %s, the client paid %d", revenue, unit, paid)
	}
	if fund.Withdrawn-bal.Unspent != paid {
		return fmt.Errorf("MISMATCH: the wallet spent %d %s, the reports say %d", fund.Withdrawn-bal.Unspent, unit, paid)
	}
	fmt.Fprintf(w, "check: revenue = paid = %d %s\n\n", paid, unit)
	fmt.Fprintf(w, "time: start %s, upload %s, download %s, deposits %s, total %s\n",
		round(tSetup), round(tPut), round(tGet), round(tDeposit), round(time.Since(start)))
	return nil
}

// startServer starts server i with its own pricing agent.
func startServer(ctx context.Context, dir string, i int, spec serverSpec, mint node.Announcement, log *slog.Logger) (*server, error) {
	agent, err := pricing.NewTargetAgent(pricing.WithBase(spec.base), pricing.WithLimits(spec.limits), pricing.WithJitter(0))
	if err != nil {
		return nil, err
	}
	s, err := node.NewServer(ctx, node.ServerConfig{
		Dir:      dir,
		Capacity: spec.capacity,
		Mint:     mint,
		Agent:    agent,
		Logger:   log,
	})
	if err != nil {
		return nil, fmt.Errorf("server %d: %w", i+1, err)
	}
	sched, _, err := s.Prices().Current(time.Now())
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("server %d: %w", i+1, err)
	}
	return &server{name: fmt.Sprintf("s%02d", i+1), spec: spec, s: s, id: s.Host().ID(), rates: sched.Rates}, nil
}

// orderByRing returns the indexes of the servers in ring order.
func orderByRing(pos []int) []int {
	out := make([]int, len(pos))
	for i, p := range pos {
		out[p] = i
	}
	return out
}

func sharesOf(list []node.PutShare) []int {
	var out []int
	for _, s := range list {
		out = append(out, s.Share)
	}
	return out
}

// list formats share numbers: "0,4", or "-" for none.
func list(nums []int) string {
	if len(nums) == 0 {
		return "-"
	}
	nums = slices.Sorted(slices.Values(nums))
	s := make([]string, len(nums))
	for i, n := range nums {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}

// short abbreviates a peer ID to its last 6 characters.
func short(id peer.ID) string {
	s := id.String()
	return "…" + s[len(s)-6:]
}

func gib(b uint64) string { return fmt.Sprintf("%d GiB", b>>30) }

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
