package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/node/files"
	"github.com/scripnet/scrip/node/pricing"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// GetReport says where a download found its shares and what it paid.
type GetReport struct {
	Size uint64 `json:"size"`
	Unit string `json:"unit"`
	// Shares maps the share numbers used to the servers they came from.
	Shares []PutShare `json:"shares"`
	// Asked is the number of servers asked; Silent did not answer;
	// Corrupt sent shares that failed their integrity check.
	Asked   int      `json:"asked"`
	Silent  []string `json:"silent,omitempty"`
	Corrupt []string `json:"corrupt,omitempty"`
	// Total is what the servers took; Unknown was paid in calls that got
	// no answer.
	Total   uint64 `json:"total"`
	Unknown uint64 `json:"unknown,omitempty"`
}

// Get downloads the file of capability and writes it to w. It walks the
// whole ring of the file's storage index (protocol.Ring over every known
// server, unfiltered), asking DownloadParallelism servers at a time which
// shares they hold (List) and reading them (Read), both paid, until it has
// k good shares. Each share is checked against the capability as it
// arrives; a corrupt one is reported to its server (AdviseCorrupt), scores
// the server down and is fetched elsewhere. Every byte written to w is
// authenticated, but if Get fails after it began writing, what was written
// must be discarded. It fails with [ErrBadCapability] for text that is not
// a capability and [ErrFileNotFound] when fewer than k good shares were
// found.
func (c *Client) Get(ctx context.Context, capability string, w io.Writer) (*GetReport, error) {
	if c.isClosed() {
		return nil, ErrClientClosed
	}
	capab, err := files.ParseCapability(strings.TrimSpace(capability))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCapability, err)
	}
	ids := c.serverIDs()
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: the announcements file names none", ErrNoServers)
	}
	si := capab.StorageIndex()
	d := &download{
		c:     c,
		capab: capab,
		si:    si,
		size:  uint64(capab.ShareSize()),
		bill:  &opBill{op: pricing.OpDownload, cap: c.downloadCap(ctx)},
		good:  make(map[int][]byte),
		from:  make(map[int]peer.ID),
		busy:  make(map[int]bool),
		rep:   &GetReport{Size: capab.Size, Unit: c.unit},
	}
	d.cond = sync.NewCond(&d.mu)
	ring := protocol.Ring(si[:], ids)
	work := make(chan peer.ID)
	var wg sync.WaitGroup
	for range min(c.cfg.DownloadParallelism, len(ring)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				d.ask(ctx, id)
			}
		}()
	}
	// Servers known to be down are asked last, if the others do not
	// have enough shares: a dial that goes unanswered takes time.
	up, down := make([]peer.ID, 0, len(ring)), []peer.ID{}
	for _, id := range ring {
		if c.isDown(id) {
			down = append(down, id)
		} else {
			up = append(up, id)
		}
	}
	for _, id := range append(up, down...) {
		if d.enough() || ctx.Err() != nil || d.failed() != nil {
			break
		}
		work <- id
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return d.rep, err
	}
	d.rep.Total = d.bill.total() - d.rep.Unknown
	if len(d.good) < capab.K {
		if d.fatal != nil {
			return d.rep, d.fatal
		}
		return d.rep, fmt.Errorf("%w: %d of the %d shares needed found on %d servers (%d did not answer, %d sent corrupt shares)",
			ErrFileNotFound, len(d.good), capab.K, d.rep.Asked, len(d.rep.Silent), len(d.rep.Corrupt))
	}
	nums := make([]int, 0, len(d.good))
	for n := range d.good {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	shares := make([][]byte, len(nums))
	for i, n := range nums {
		shares[i] = d.good[n]
		d.rep.Shares = append(d.rep.Shares, PutShare{Share: n, Server: d.from[n].String()})
	}
	if _, err := files.DecodeTo(w, capab, shares); err != nil {
		return d.rep, fmt.Errorf("client: %w", err)
	}
	return d.rep, nil
}

// download is the state of one Get.
type download struct {
	c     *Client
	capab *files.Capability
	si    [files.StorageIndexSize]byte
	size  uint64
	bill  *opBill

	mu   sync.Mutex
	cond *sync.Cond
	good map[int][]byte
	from map[int]peer.ID
	busy map[int]bool // reads in flight
	rep  *GetReport
	// fatal is a failure to pay that ends the download.
	fatal error
}

func (d *download) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fatal
}

func (d *download) enough() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.good) >= d.capab.K
}

// claim reserves share n for reading, waiting while enough reads are in
// flight to finish the download. It returns false if the share is not
// wanted (held, being read elsewhere, or the download has enough).
func (d *download) claim(n int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if len(d.good) >= d.capab.K || d.good[n] != nil || d.busy[n] {
			return false
		}
		if len(d.good)+len(d.busy) < d.capab.K {
			d.busy[n] = true
			return true
		}
		d.cond.Wait()
	}
}

// done ends the read of share n: data, if not nil, is share got, good.
func (d *download) done(n, got int, data []byte, from peer.ID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.busy, n)
	if data != nil && d.good[got] == nil {
		d.good[got], d.from[got] = data, from
	}
	d.cond.Broadcast()
}

func (d *download) note(f func(r *GetReport)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d.rep)
}

// ask lists the shares server holds and reads those still needed.
func (d *download) ask(ctx context.Context, server peer.ID) {
	c := d.c
	if d.enough() {
		return
	}
	d.note(func(r *GetReport) { r.Asked++ })
	b := &callBill{op: d.bill}
	var list []*pb.Share
	err := c.paidCall(ctx, server, "list", protocol.Usage{}, b, func(ctx context.Context) (err error) {
		list, err = c.storage.List(ctx, server, &pb.List{StorageIndex: d.si[:]})
		return err
	})
	d.account(b)
	if err != nil {
		if fatalPayment(err) {
			d.note(func(*GetReport) {
				if d.fatal == nil {
					d.fatal = err
				}
			})
			return
		}
		if _, ok := errors.AsType[*protocol.Error](err); !ok {
			d.note(func(r *GetReport) { r.Silent = append(r.Silent, server.String()) })
		}
		return
	}
	c.market.Served(server)
	slices.SortFunc(list, func(a, b *pb.Share) int { return int(a.ShareNumber) - int(b.ShareNumber) })
	for _, sh := range list {
		n := int(sh.ShareNumber)
		if n >= d.capab.N || !d.claim(n) {
			continue
		}
		data, err := d.read(ctx, server, uint32(n))
		if err != nil && fatalPayment(err) {
			d.note(func(*GetReport) {
				if d.fatal == nil {
					d.fatal = err
				}
			})
		}
		if err != nil {
			if errors.Is(err, protocol.ErrNotFound) {
				c.scores.Report(server, pricing.EventMissingShare)
			}
			d.done(n, 0, nil, server)
			continue
		}
		got, err := d.capab.CheckShare(data)
		if err != nil {
			d.corrupt(ctx, server, n, err)
			d.done(n, 0, nil, server)
			continue
		}
		c.market.Served(server)
		d.done(n, got, data, server)
	}
}

// read reads share n from server, at most the share size the capability
// implies, one paid Read of at most protocol.MaxReadSize at a time.
func (d *download) read(ctx context.Context, server peer.ID, n uint32) ([]byte, error) {
	c := d.c
	// The size comes from the capability, which nothing has authenticated
	// yet: grow with the data the server actually sends.
	out := make([]byte, 0, min(d.size, protocol.MaxReadSize))
	for off := uint64(0); off < d.size; {
		length := min(d.size-off, protocol.MaxReadSize)
		b := &callBill{op: d.bill}
		var data []byte
		err := c.paidCall(ctx, server, "read", protocol.Usage{ReadBytes: length}, b, func(ctx context.Context) (err error) {
			data, err = c.storage.Read(ctx, server, &pb.Read{StorageIndex: d.si[:], ShareNumber: n, Offset: off, Length: length})
			return err
		})
		d.account(b)
		if err != nil {
			return nil, err
		}
		if uint64(len(data)) > length {
			data = data[:length]
		}
		out = append(out, data...)
		off += uint64(len(data))
		if uint64(len(data)) < length {
			break // the share ends early: it will fail its check
		}
	}
	return out, nil
}

func (d *download) account(b *callBill) {
	_, unknown := b.cost()
	if unknown > 0 {
		d.note(func(r *GetReport) { r.Unknown += unknown })
	}
}

// corrupt reports a share that failed its check: to the server, which may
// drop it, to the scores, and to the report.
func (d *download) corrupt(ctx context.Context, server peer.ID, n int, why error) {
	c := d.c
	c.scores.Report(server, pricing.EventCorruptShare)
	c.metrics.corrupt.Inc()
	c.log.Info("corrupt share", "server", server, "share", n, "why", why)
	d.note(func(r *GetReport) { r.Corrupt = append(r.Corrupt, server.String()) })
	reason := "share fails its integrity check"
	if errors.Is(why, files.ErrMalformedShare) {
		reason = "share is malformed"
	}
	err := c.storage.AdviseCorrupt(context.WithoutCancel(ctx), server, &pb.AdviseCorrupt{StorageIndex: d.si[:], ShareNumber: uint32(n), Reason: reason})
	c.observeCall("advise_corrupt", server, err, nil)
}

// DefaultDownloadShare bounds a download when no download budget is set:
// it may spend at most 1/DefaultDownloadShare of the wallet's unspent
// value at its start. Downloads walk every server of the ring, expensive
// ones included, and a fresh session has no price history, so without a
// bound servers that raise their prices could be paid whatever they ask.
const DefaultDownloadShare = 100

// downloadCap is the most one download may pay: no cap beyond the budget
// when a download budget is set, else a share of the unspent value.
func (c *Client) downloadCap(ctx context.Context) uint64 {
	if c.cfg.Budget.Download != 0 {
		return 0
	}
	b, err := c.wallet.Balance(ctx)
	if err != nil {
		return 1
	}
	return max(1, b.Unspent/DefaultDownloadShare)
}
