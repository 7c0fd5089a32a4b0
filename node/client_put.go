package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/internal/crashpoint"
	"github.com/scripnet/scrip/node/files"
	"github.com/scripnet/scrip/node/pricing"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// PutReport says where an upload placed each share and what each call
// cost. It holds nothing secret: the storage index is public.
type PutReport struct {
	StorageIndex string `json:"storage_index"` // hex
	Size         uint64 `json:"size"`          // of the file
	ShareSize    uint64 `json:"share_size"`    // of each share
	K            int    `json:"k"`
	Happy        int    `json:"happy"`
	N            int    `json:"n"`
	Unit         string `json:"unit"`
	// Ceiling is the most the market pays to store one share, before any
	// premium.
	Ceiling uint64 `json:"ceiling"`
	// Servers is the number of distinct servers holding shares.
	Servers int `json:"servers"`
	// Shares says where each share went, by share number.
	Shares []PutShare `json:"shares"`
	// Unplaced lists shares no server took (the upload succeeded anyway,
	// with enough distinct servers).
	Unplaced []int `json:"unplaced,omitempty"`
	// Calls lists every call, in the order they ended.
	Calls []CallReport `json:"calls"`
	// Total is what the server took; Unknown is paid in calls that got no
	// answer, whose coins may or may not have been taken.
	Total   uint64 `json:"total"`
	Unknown uint64 `json:"unknown,omitempty"`
}

// PutShare is one share's place.
type PutShare struct {
	Share  int    `json:"share"`
	Server string `json:"server"`
}

// CallReport is one call to a server.
type CallReport struct {
	Server string `json:"server"`
	Op     string `json:"op"`
	Shares []int  `json:"shares,omitempty"`
	Bytes  uint64 `json:"bytes,omitempty"`
	// Cost is what the server took for the call, in the report's unit.
	Cost  uint64 `json:"cost"`
	Error string `json:"error,omitempty"`
}

// PutProgress reports how far an upload is.
type PutProgress struct {
	// SharesPlaced of SharesTotal are written and closed.
	SharesPlaced int `json:"shares_placed"`
	SharesTotal  int `json:"shares_total"`
	// BytesWritten of BytesTotal share bytes are written.
	BytesWritten uint64 `json:"bytes_written"`
	BytesTotal   uint64 `json:"bytes_total"`
}

// PutOption configures one [Client.Put].
type PutOption func(*putOptions)

type putOptions struct {
	progress func(PutProgress)
}

// WithPutProgress has Put call fn as shares are written. fn is called from
// several goroutines, one call at a time.
func WithPutProgress(fn func(PutProgress)) PutOption {
	return func(o *putOptions) { o.progress = fn }
}

// writeChunk is the size of one Write call.
const writeChunk = protocol.MaxWriteSize

// maxPlaceRounds bounds the rounds of placement: after servers fail, their
// shares go to the next eligible servers of the ring.
const maxPlaceRounds = 4

// Put encrypts and erasure-codes the file read from r (files.Encode, with
// the configured k and N) and places its shares: it walks the file's
// permuted ring (protocol.Ring), lets the market pick the first N servers
// within its ceiling and budget that are not penalised (pricing.Market
// Select), pays each server per call (Allocate, then the Writes and Close
// it covers) and, if a server fails, gives its shares to the next eligible
// servers. Put succeeds once shares sit on at least happy distinct
// servers; otherwise it fails with the market's explanation (a
// *pricing.SelectError) or [ErrUploadFailed]. It returns the capability,
// a secret that reads the file, and a report.
func (c *Client) Put(ctx context.Context, r io.Reader, opts ...PutOption) (string, *PutReport, error) {
	if c.isClosed() {
		return "", nil, ErrClientClosed
	}
	var o putOptions
	for _, f := range opts {
		f(&o)
	}
	capab, shares, err := files.Encode(r, c.cfg.K, c.cfg.N)
	if err != nil {
		return "", nil, fmt.Errorf("client: %w", err)
	}
	si := capab.StorageIndex()
	size := uint64(capab.ShareSize())
	lease := uint64(c.cfg.Lease / time.Second)
	u := &upload{
		c:      c,
		si:     si,
		size:   size,
		lease:  lease,
		usage:  protocol.Usage{StoreBytes: size, StoreSeconds: lease, WriteBytes: size},
		shares: shares,
		bill:   &opBill{op: pricing.OpUpload},
		o:      o,
		rep: &PutReport{StorageIndex: hex.EncodeToString(si[:]), Size: capab.Size, ShareSize: size,
			K: c.cfg.K, Happy: c.cfg.Happy, N: c.cfg.N, Unit: c.unit},
		holders: make(map[int]peer.ID),
		failed:  make(map[peer.ID]bool),
	}
	if err := u.run(ctx); err != nil {
		return "", u.rep, err
	}
	return capab.String(), u.rep, nil
}

// upload is the state of one Put.
type upload struct {
	c      *Client
	si     [files.StorageIndexSize]byte
	size   uint64
	lease  uint64
	usage  protocol.Usage // of one share's allocation
	shares [][]byte
	bill   *opBill
	o      putOptions

	mu      sync.Mutex
	rep     *PutReport
	holders map[int]peer.ID
	failed  map[peer.ID]bool
	errs    []string
	fatal   error // a failure no other server can help with
	written uint64
	closed  int
}

func (u *upload) run(ctx context.Context) error {
	c := u.c
	if len(c.serverIDs()) == 0 {
		return fmt.Errorf("%w: the announcements file names none", ErrNoServers)
	}
	// Uploads skip servers that are down; downloads ask them all.
	ids, down := c.liveServers()
	if len(ids) == 0 {
		return fmt.Errorf("%w: none of the %d servers is connected (see `scrip wait-until-connected`)", ErrNoServers, down)
	}
	ring := protocol.Ring(u.si[:], ids)
	sel, err := c.market.Select(ring, u.usage, c.cfg.Happy, c.cfg.N)
	if errors.Is(err, pricing.ErrNoPrices) {
		return fmt.Errorf("%w: no server's prices are known yet (see `scrip wait-until-connected`)", ErrNoServers)
	}
	if err != nil {
		if down > 0 {
			return &kindError{msg: fmt.Sprintf("%v; %d more servers unreachable", err, down), kind: err}
		}
		return err
	}
	u.rep.Ceiling = sel.Ceiling
	maxLimit := slices.Max(sel.Limits)
	todo := make([]int, len(u.shares))
	for i := range todo {
		todo[i] = i
	}
	for round := 0; len(todo) > 0 && round < maxPlaceRounds; round++ {
		var servers []peer.ID
		var limits []uint64
		if round == 0 {
			servers, limits = sel.Servers, sel.Limits
		} else {
			rest := slices.DeleteFunc(slices.Clone(ring), func(id peer.ID) bool { return u.used(id) })
			if s2, err := c.market.Select(rest, u.usage, 1, len(todo)); err == nil {
				servers, limits = s2.Servers, s2.Limits
			} else {
				// No new server qualifies: double up on servers that
				// worked.
				servers = u.goodHolders()
				for range servers {
					limits = append(limits, maxLimit)
				}
			}
		}
		if len(servers) == 0 {
			break
		}
		assign := make(map[peer.ID][]uint32)
		limitOf := make(map[peer.ID]uint64)
		for i, sh := range todo {
			id := servers[i%len(servers)]
			assign[id] = append(assign[id], uint32(sh))
			limitOf[id] = limits[i%len(servers)]
		}
		todo = u.placeAll(ctx, assign, limitOf)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if u.fatal != nil {
			break
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	distinct := make(map[peer.ID]bool)
	for sh := range u.shares {
		if id, ok := u.holders[sh]; ok {
			u.rep.Shares = append(u.rep.Shares, PutShare{Share: sh, Server: id.String()})
			distinct[id] = true
		} else {
			u.rep.Unplaced = append(u.rep.Unplaced, sh)
		}
	}
	u.rep.Servers = len(distinct)
	u.rep.Total = u.bill.total() - u.rep.Unknown
	if len(distinct) < c.cfg.Happy {
		if u.fatal != nil {
			return u.fatal
		}
		why := ""
		if len(u.errs) > 0 {
			why = " (" + strings.Join(u.errs[:min(len(u.errs), 3)], "; ") + ")"
		}
		return fmt.Errorf("%w: shares reached %d distinct servers, %d needed%s", ErrUploadFailed, len(distinct), c.cfg.Happy, why)
	}
	return nil
}

// used reports whether server id holds shares of this upload or failed.
func (u *upload) used(id peer.ID) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.failed[id] {
		return true
	}
	for _, h := range u.holders {
		if h == id {
			return true
		}
	}
	return false
}

// goodHolders returns the servers holding shares, in no particular order.
func (u *upload) goodHolders() []peer.ID {
	u.mu.Lock()
	defer u.mu.Unlock()
	seen := make(map[peer.ID]bool)
	var out []peer.ID
	for _, id := range u.holders {
		if !seen[id] && !u.failed[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// placeAll places shares on servers in parallel and returns the shares
// left unplaced.
func (u *upload) placeAll(ctx context.Context, assign map[peer.ID][]uint32, limits map[peer.ID]uint64) []int {
	sem := make(chan struct{}, u.c.cfg.UploadParallelism)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var left []int
	for id, nums := range assign {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			placed, err := u.place(ctx, id, nums, limits[id])
			u.mu.Lock()
			for _, n := range placed {
				u.holders[int(n)] = id
			}
			if err != nil {
				u.failed[id] = true
				u.errs = append(u.errs, fmt.Sprintf("%s: %v", shortID(id), err))
				if u.fatal == nil && fatalPayment(err) {
					u.fatal = err
				}
			}
			u.mu.Unlock()
			mu.Lock()
			for _, n := range nums {
				if !slices.Contains(placed, n) {
					left = append(left, int(n))
				}
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(left)
	return left
}

func (u *upload) addCall(r CallReport) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.rep.Calls = append(u.rep.Calls, r)
}

func (u *upload) progress(placed int, wrote uint64) {
	if u.o.progress == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.written += wrote
	u.closed += placed
	u.o.progress(PutProgress{SharesPlaced: u.closed, SharesTotal: len(u.shares), BytesWritten: u.written,
		BytesTotal: u.size * uint64(len(u.shares))})
}

// place allocates shares nums on server, paying at most limit a share,
// writes and closes them, and returns the shares the server holds.
func (u *upload) place(ctx context.Context, server peer.ID, nums []uint32, limit uint64) ([]uint32, error) {
	c := u.c
	usage := u.usage
	usage.StoreBytes *= uint64(len(nums))
	usage.WriteBytes *= uint64(len(nums))
	b := &callBill{op: u.bill, limit: limit * uint64(len(nums))}
	var resp *pb.AllocateResponse
	err := c.paidCall(ctx, server, "allocate", usage, b, func(ctx context.Context) (err error) {
		resp, err = c.storage.Allocate(ctx, server, &pb.Allocate{StorageIndex: u.si[:], ShareNumbers: nums,
			AllocatedSize: u.size, LeaseSeconds: u.lease})
		return err
	})
	paid, unknown := b.cost()
	u.mu.Lock()
	u.rep.Unknown += unknown
	u.mu.Unlock()
	cr := CallReport{Server: server.String(), Op: "allocate", Cost: paid}
	for _, n := range nums {
		cr.Shares = append(cr.Shares, int(n))
	}
	if err != nil {
		cr.Error = err.Error()
		u.addCall(cr)
		return nil, err
	}
	u.addCall(cr)
	c.market.Served(server)
	var placed []uint32
	for _, n := range resp.AlreadyHave {
		if slices.Contains(nums, n) {
			placed = append(placed, n)
		}
	}
	for _, n := range resp.Allocated {
		if !slices.Contains(nums, n) || slices.Contains(placed, n) {
			continue
		}
		if err := u.write(ctx, server, n); err != nil {
			return placed, err
		}
		placed = append(placed, n)
		crashpoint.Hit("client/put/after-share")
		u.progress(1, 0)
	}
	return placed, nil
}

// write writes share n to server in chunks and closes it.
func (u *upload) write(ctx context.Context, server peer.ID, n uint32) error {
	c := u.c
	data := u.shares[n]
	for off := 0; off < len(data); off += writeChunk {
		chunk := data[off:min(off+writeChunk, len(data))]
		err := c.storage.Write(ctx, server, &pb.Write{StorageIndex: u.si[:], ShareNumber: n, Offset: uint64(off), Data: chunk})
		c.observeCall("write", server, err, nil)
		if err != nil {
			u.addCall(CallReport{Server: server.String(), Op: "write", Shares: []int{int(n)}, Bytes: uint64(off), Error: err.Error()})
			return err
		}
		u.progress(0, uint64(len(chunk)))
	}
	u.addCall(CallReport{Server: server.String(), Op: "write", Shares: []int{int(n)}, Bytes: uint64(len(data))})
	err := c.storage.Close(ctx, server, &pb.Close{StorageIndex: u.si[:], ShareNumber: n})
	c.observeCall("close", server, err, nil)
	cr := CallReport{Server: server.String(), Op: "close", Shares: []int{int(n)}}
	if err != nil {
		cr.Error = err.Error()
	}
	u.addCall(cr)
	return err
}

// paidCall runs fn, a paid call to server with the given usage, with bill
// b in its context. A server that refuses bearer coins (RATE_LIMITED:
// too much undeposited bearer value) gets coins designated to it, swapped
// at the mint, and the call is made once more.
func (c *Client) paidCall(ctx context.Context, server peer.ID, op string, usage protocol.Usage, b *callBill, fn func(ctx context.Context) error) error {
	// Reach the server before paying: coins reserved for a request that
	// never left would wait for a refresh.
	if err := c.reach(ctx, server); err != nil {
		c.observeCall(op, server, err, b)
		return err
	}
	ctx = withBill(ctx, b)
	err := fn(ctx)
	if errors.Is(err, protocol.ErrRateLimited) {
		if q := c.quote(server, usage); q > 0 {
			if terr := c.topUp(ctx, server, q); terr == nil {
				err = fn(ctx)
			} else {
				c.log.Info("no designated coins for a rate-limited server", "server", server, "err", terr)
			}
		}
	}
	c.observeCall(op, server, err, b)
	return err
}

// reach connects to server if it is not connected.
func (c *Client) reach(ctx context.Context, server peer.ID) error {
	if c.host.Network().Connectedness(server) == network.Connected {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	if err := c.host.Connect(cctx, peer.AddrInfo{ID: server}); err != nil {
		return &kindError{msg: "unreachable", kind: err}
	}
	return nil
}

// quote returns the price of usage at server under its cached schedule,
// or 0 if none is known.
func (c *Client) quote(server peer.ID, usage protocol.Usage) uint64 {
	s := c.paid.Schedule(server)
	if s == nil {
		return 0
	}
	q, err := protocol.Quote(s.Rates, usage)
	if err != nil {
		return 0
	}
	return q
}

// observeCall counts a call in the metrics and scores the server for what
// went wrong: no answer is a timeout, an internal error on a paid call
// coins taken without service.
func (c *Client) observeCall(op string, server peer.ID, err error, b *callBill) {
	c.noteCall(server, err)
	c.metrics.call(op, err)
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrNoFunds) || errors.Is(err, protocol.ErrGaveUp) ||
		errors.Is(err, pricing.ErrOverBudget) {
		return
	}
	e, ok := errors.AsType[*protocol.Error](err)
	switch {
	case !ok:
		c.scores.Report(server, pricing.EventTimeout)
	case e.Code == pb.Code_INTERNAL:
		if _, unknown := b.costOrZero(); unknown > 0 {
			c.scores.Report(server, pricing.EventCoinsTaken)
		} else {
			c.scores.Report(server, pricing.EventTimeout)
		}
	}
}

func (b *callBill) costOrZero() (paid, unknown uint64) {
	if b == nil {
		return 0, 0
	}
	return b.cost()
}

// fatalPayment reports whether err is a failure to pay that no other
// server would avoid: the wallet is empty, the budget spent, or the mint
// gone when change is needed.
func fatalPayment(err error) bool {
	return errors.Is(err, ErrNoFunds) || errors.Is(err, pricing.ErrOverBudget) || errors.Is(err, ErrMintUnreachable)
}

// shortID abbreviates a peer ID for messages.
func shortID(id peer.ID) string {
	s := id.String()
	if len(s) > 12 {
		return s[:6] + "…" + s[len(s)-6:]
	}
	return s
}
