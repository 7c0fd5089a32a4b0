package node

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

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
	// Shares lists the shares used, by number, with the servers they came
	// from: k of them, or more when a share was replaced part-way.
	Shares []PutShare `json:"shares"`
	// Asked is the number of servers asked; Silent did not answer;
	// Corrupt sent shares that failed their integrity check; AboveCeiling
	// asked more than the market's ceiling allows, and were not paid.
	Asked        int      `json:"asked"`
	Silent       []string `json:"silent,omitempty"`
	Corrupt      []string `json:"corrupt,omitempty"`
	AboveCeiling []string `json:"above_ceiling,omitempty"`
	// Total is what the servers took; Unknown was paid in calls that got
	// no answer.
	Total   uint64 `json:"total"`
	Unknown uint64 `json:"unknown,omitempty"`
}

// getWindow is the most one Read asks for: protocol.MaxReadSize, so that
// a download makes no more paid Reads than one of whole shares would. A
// download holds about two windows per share it reads.
var getWindow uint64 = protocol.MaxReadSize

// Get downloads the file of capability and writes it to w. It walks the
// whole ring of the file's storage index (protocol.Ring over every known
// server, unfiltered), asking DownloadParallelism servers at a time which
// shares they hold (List) and opening them (a first Read), both paid,
// until it has k good shares; it then reads those k a window at a time
// (paid Reads of up to protocol.MaxReadSize, one ahead of the decoding)
// and decodes, authenticates and writes the file a segment at a time.
// Memory stays a few windows per share whatever the file's size.
//
// Each share is checked against the capability as it arrives: whole, if
// it fits in one Read; else its header at once and its body's hash when
// its end is read, and every segment is authenticated as it is opened. A
// corrupt share is reported to its server (AdviseCorrupt), scores the
// server down and is fetched elsewhere: when a segment does not open, Get
// reads the segment's blocks from more shares until k of them open it,
// and the shares whose blocks differ from it are the corrupt ones. A share
// that fails or stops answering mid-file is replaced by another from the
// segment where it stopped. A server's word on a share's number is
// checked only by the segments (SPEC.md §10, Streaming), so the search
// takes blocks of a number it has from other servers too, as other
// candidates for that share; a share listed twice is read once; and a
// spare starts with a window of one block, since it may give only that.
//
// Every byte written to w is authentic and in place, but w receives the
// file as it is decoded: if Get fails after it began writing (a segment
// that no k shares open, the servers gone, the context cancelled), w has
// received a prefix of the file and the caller must discard it. `scrip get
// -o FILE` writes to a temporary file beside FILE and renames it only on
// success; POST /get breaks the connection, so that the answer ends short
// of its Content-Length.
//
// Without a download budget, once the market has history it pays no
// server more than the market's ceiling for the call plus the premium,
// passing over those that ask more (and before that, at most
// 1/[DefaultDownloadShare] of the wallet in all). It fails with
// [ErrBadCapability] for text that is not a capability, an error wrapping
// pricing.ErrAboveCeiling (and pricing.ErrOverBudget) when fewer than k
// good shares were found and servers were passed over for their price,
// and [ErrFileNotFound] when fewer than k good shares were found
// otherwise.
func (c *Client) Get(ctx context.Context, capability string, w io.Writer) (*GetReport, error) {
	if c.isClosed() {
		return nil, ErrClientClosed
	}
	capab, err := files.ParseCapability(strings.TrimSpace(capability))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCapability, err)
	}
	dec, err := files.NewDecoder(capab)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCapability, err)
	}
	ids := c.serverIDs()
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: the announcements file names none", ErrNoServers)
	}
	si := capab.StorageIndex()
	bound := c.downloadBound(ctx)
	d := &download{
		c:     c,
		capab: capab,
		si:    si,
		size:  uint64(capab.ShareSize()),
		bill:  &opBill{op: pricing.OpDownload, cap: bound.cap},
		bound: bound,
		dec:   dec,
		good:  make(map[int]*shareStream),
		busy:  make(map[int]bool),
		rep:   &GetReport{Size: capab.Size, Unit: c.unit},
	}
	d.cond = sync.NewCond(&d.mu)
	defer d.stopAll()
	ring := protocol.Ring(si[:], ids)
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
	d.queue = append(up, down...)
	var wg sync.WaitGroup
	for range min(c.cfg.DownloadParallelism, len(ring)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if d.enough() || ctx.Err() != nil || d.failed() != nil {
					return
				}
				id, ok := d.nextServer()
				if !ok {
					return
				}
				d.ask(ctx, id)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		d.finish()
		return d.rep, err
	}
	if len(d.good) < capab.K {
		d.finish()
		return d.rep, d.notEnough(len(d.good))
	}
	err = d.stream(ctx, w)
	d.finish()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return d.rep, cerr
		}
		return d.rep, err
	}
	return d.rep, nil
}

// download is the state of one Get.
type download struct {
	c     *Client
	capab *files.Capability
	si    [files.StorageIndexSize]byte
	size  uint64 // of each share
	bill  *opBill
	bound downloadBound
	dec   *files.Decoder

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []peer.ID // servers not asked yet, in the order to ask them
	good    map[int]*shareStream
	busy    map[int]bool // opens in flight
	spares  []spareShare // shares listed and not opened
	streams []*shareStream
	rep     *GetReport
	// fatal is a failure to pay that ends the download.
	fatal error
	// dear is the first call refused for its price above the ceiling.
	dear *aboveCeilingError
}

// spareShare is a share a server listed that the download has not opened.
type spareShare struct {
	server peer.ID
	num    int
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

// nextServer returns the next server to ask, if any is left.
func (d *download) nextServer() (peer.ID, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.queue) == 0 {
		return "", false
	}
	id := d.queue[0]
	d.queue = d.queue[1:]
	return id, true
}

// claim reserves share n for opening, waiting while enough opens are in
// flight to finish the search. It returns false if the share is not
// wanted (held, being opened elsewhere, or the download has enough).
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

// done ends the open of share n: s, if not nil, is a good share.
func (d *download) done(n int, s *shareStream) {
	d.mu.Lock()
	delete(d.busy, n)
	dup := s != nil && d.good[s.num] != nil
	if s != nil && !dup {
		d.good[s.num] = s
	}
	d.cond.Broadcast()
	d.mu.Unlock()
	if dup {
		s.stop()
	}
}

func (d *download) note(f func(r *GetReport)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d.rep)
}

func (d *download) setFatal(err error) {
	d.note(func(*GetReport) {
		if d.fatal == nil {
			d.fatal = err
		}
	})
}

// notEnough explains a download that found fewer than k usable shares.
func (d *download) notEnough(found int) error {
	if err := d.failed(); err != nil {
		return err
	}
	if err := d.priceFailure(found); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return fmt.Errorf("%w: %d of the %d shares needed found on %d servers (%d did not answer, %d sent corrupt shares)",
		ErrFileNotFound, found, d.capab.K, d.rep.Asked, len(d.rep.Silent), len(d.rep.Corrupt))
}

// ask lists the shares server holds and opens those still needed; the
// others are kept as spares.
func (d *download) ask(ctx context.Context, server peer.ID) {
	if d.enough() {
		return
	}
	for _, sh := range d.list(ctx, server) {
		n := int(sh.ShareNumber)
		if !d.claim(n) {
			d.addSpare(server, n)
			continue
		}
		d.done(n, d.open(ctx, server, n, 0, getWindow))
	}
}

// list asks server which shares of the file it holds (a paid List), and
// returns those numbered below N, by number, each once; nil if it would
// not say.
func (d *download) list(ctx context.Context, server peer.ID) []*pb.Share {
	c := d.c
	d.note(func(r *GetReport) { r.Asked++ })
	b := d.callBill(protocol.Usage{})
	var list []*pb.Share
	err := c.paidCall(ctx, server, "list", protocol.Usage{}, b, func(ctx context.Context) (err error) {
		list, err = c.storage.List(ctx, server, &pb.List{StorageIndex: d.si[:]})
		return err
	})
	d.account(b)
	if err != nil {
		if fatalPayment(err) {
			d.setFatal(err)
			return nil
		}
		if d.aboveCeiling(server, err) {
			return nil
		}
		if _, ok := errors.AsType[*protocol.Error](err); !ok {
			d.note(func(r *GetReport) { r.Silent = append(r.Silent, server.String()) })
		}
		return nil
	}
	// A List answer proves nothing (it is the server's word), so it does
	// not count as service for the market's ceiling: servers that hold
	// nothing and answer Lists cheaply would otherwise gain the weight of
	// servers that serve (Market.Served; open counts a checked share). A
	// share listed twice is one share: each entry would be opened, and
	// paid for, on its own.
	list = slices.DeleteFunc(list, func(sh *pb.Share) bool { return int(sh.ShareNumber) >= d.capab.N })
	slices.SortFunc(list, func(a, b *pb.Share) int { return int(a.ShareNumber) - int(b.ShareNumber) })
	return slices.CompactFunc(list, func(a, b *pb.Share) bool { return a.ShareNumber == b.ShareNumber })
}

func (d *download) addSpare(server peer.ID, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sp := spareShare{server: server, num: n}
	if !slices.Contains(d.spares, sp) {
		d.spares = append(d.spares, sp)
	}
}

// errShortShare reports a share that ends before the size its capability
// implies.
var errShortShare = fmt.Errorf("%w: the share ends early", files.ErrShareMismatch)

// open starts reading share n on server at segment i, with a first
// window of the given length (0: one block; each next window is twice as
// long, up to getWindow). A share that fits in one Read is read and
// checked whole; otherwise its header is read and checked, with the first
// window of its body when i is 0 (its body is then hashed as it is read,
// and checked at its end). It returns nil if the share cannot be used,
// once the failure is reported.
//
// A spare, opened in place of a share that failed or to tell corrupt
// blocks from good ones, may give one block and be stopped: its first
// window is one block, so that hostile servers that make a download open
// many spares do not make it pay for windows it does not use.
func (d *download) open(ctx context.Context, server peer.ID, n int, i uint64, window uint64) *shareStream {
	c := d.c
	hs := int64(d.capab.HeaderSize())
	off, bl := d.capab.BlockRange(i)
	if window == 0 {
		window = uint64(bl)
	}
	window = min(window, getWindow)
	length := uint64(hs)
	switch {
	case d.size <= getWindow:
		length = d.size
	case i == 0:
		length = min(d.size, uint64(hs)+window, getWindow)
	}
	data, err := d.readAt(ctx, server, n, 0, length)
	if err != nil {
		d.readFailed(server, err)
		return nil
	}
	s := &shareStream{d: d, server: server, pos: off, window: window}
	switch {
	case uint64(len(data)) == d.size:
		if s.num, err = d.capab.CheckShare(data); err != nil {
			d.corrupt(ctx, server, n, err)
			return nil
		}
		s.win, s.fetchAt = data[off:], int64(d.size)
	case uint64(len(data)) < length:
		d.corrupt(ctx, server, n, errShortShare)
		return nil
	default:
		h, err := d.capab.CheckHeader(data)
		if err != nil {
			d.corrupt(ctx, server, n, err)
			return nil
		}
		s.num, s.want = h.Number, h.Hashes[h.Number]
		s.fetchAt = off
		if i == 0 {
			s.hash = files.NewShareHash(s.num)
			s.win, s.fetchAt = data[hs:], int64(len(data))
		}
	}
	c.market.Served(server)
	d.mu.Lock()
	d.streams = append(d.streams, s)
	d.mu.Unlock()
	return s
}

// readAt reads length bytes of share n on server from offset off, in one
// paid Read; fewer only at the end of the share.
func (d *download) readAt(ctx context.Context, server peer.ID, n int, off, length uint64) ([]byte, error) {
	c := d.c
	b := d.callBill(protocol.Usage{ReadBytes: length})
	var data []byte
	err := c.paidCall(ctx, server, "read", protocol.Usage{ReadBytes: length}, b, func(ctx context.Context) (err error) {
		data, err = c.storage.Read(ctx, server, &pb.Read{StorageIndex: d.si[:], ShareNumber: uint32(n), Offset: off, Length: length})
		return err
	})
	d.account(b)
	if err != nil {
		return nil, err
	}
	if uint64(len(data)) > length {
		data = data[:length]
	}
	return data, nil
}

// readFailed notes a Read that failed: a failure to pay ends the
// download, a missing share scores its server.
func (d *download) readFailed(server peer.ID, err error) {
	if fatalPayment(err) {
		d.setFatal(err)
	}
	d.aboveCeiling(server, err)
	if errors.Is(err, protocol.ErrNotFound) {
		d.c.scores.Report(server, pricing.EventMissingShare)
	}
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

// stream decodes the file from the k shares found, a segment at a time,
// and writes it to w.
func (d *download) stream(ctx context.Context, w io.Writer) error {
	active := make([]*shareStream, 0, len(d.good))
	for _, s := range d.good {
		active = append(active, s)
	}
	byNum(active)
	blocks := make([][]byte, d.capab.N)
	m := d.capab.Segments()
	for i := range m {
		var err error
		if active, err = d.gather(ctx, i, active, blocks); err != nil {
			return err
		}
		plain, err := d.dec.Segment(i, blocks)
		if errors.Is(err, files.ErrDecrypt) {
			plain, active, err = d.search(ctx, i, active, blocks)
		}
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}
		for _, s := range active {
			s.used = true
		}
		if _, err := w.Write(plain); err != nil {
			return fmt.Errorf("client: %w", err)
		}
	}
	// The shares read from start to end are checked whole. What they gave
	// was authenticated with each segment, but a corrupt byte may lie
	// where no segment looks (padding).
	for _, s := range active {
		if s.hash != nil && s.pos == int64(d.size) && [32]byte(s.hash.Sum(nil)) != s.want {
			s.corrupt = true
			d.corrupt(ctx, s.server, s.num, fmt.Errorf("%w: share %d body is corrupt", files.ErrShareMismatch, s.num))
		}
	}
	return nil
}

// gather puts block i of each active share in blocks (the others nil),
// replacing shares that fail with spares until k give theirs. It returns
// the shares that did, by number.
func (d *download) gather(ctx context.Context, i uint64, active []*shareStream, blocks [][]byte) ([]*shareStream, error) {
	clear(blocks)
	kept := active[:0:0]
	for _, s := range active {
		b, err := s.block(ctx, i)
		if err != nil {
			d.drop(ctx, s, err)
			continue
		}
		blocks[s.num] = b
		kept = append(kept, s)
	}
	for len(kept) < d.capab.K {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := d.spare(ctx, i, kept, false)
		if err != nil {
			return nil, err
		}
		b, err := s.block(ctx, i)
		if err != nil {
			d.drop(ctx, s, err)
			continue
		}
		blocks[s.num] = b
		kept = append(kept, s)
	}
	byNum(kept)
	return kept, nil
}

// search decodes segment i when the active shares' blocks do not open
// it: it adds the blocks of spare shares one at a time until k of those
// at hand open it, reports the shares whose blocks differ from the
// segment as corrupt, and returns the segment's plaintext and the k
// lowest-numbered shares left. A server's word on a share's number is
// authenticated only with the share's whole body, so spares may be
// given as shares already at hand (one server lists every number and
// sends garbage as each): once no spare of another number is left, the
// search takes those too, as other candidates for the same shares.
func (d *download) search(ctx context.Context, i uint64, active []*shareStream, blocks [][]byte) ([]byte, []*shareStream, error) {
	all := slices.Clone(active)
	var cands []files.Candidate
	for _, s := range active {
		cands = append(cands, files.Candidate{Num: s.num, Block: blocks[s.num]})
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, active, err
		}
		s, err := d.spare(ctx, i, all, true)
		if err != nil {
			if ctx.Err() != nil || d.failed() != nil {
				return nil, active, err
			}
			return nil, active, fmt.Errorf("%w: segment %d does not open and no other share is left to tell the corrupt ones (%v)", files.ErrDecrypt, i, err)
		}
		b, err := s.block(ctx, i)
		if err != nil {
			d.drop(ctx, s, err)
			continue
		}
		all = append(all, s)
		cands = append(cands, files.Candidate{Num: s.num, Block: b})
		plain, bad, err := d.dec.SearchAmong(i, cands)
		if errors.Is(err, files.ErrDecrypt) || errors.Is(err, files.ErrNotEnoughShares) {
			continue
		}
		if err != nil {
			return nil, active, err
		}
		var good []*shareStream
		for x, s := range all {
			if !slices.Contains(bad, x) {
				good = append(good, s)
				continue
			}
			s.corrupt = true
			s.stop()
			d.corrupt(ctx, s.server, s.num, fmt.Errorf("%w: share %d's block of segment %d differs from the segment", files.ErrShareMismatch, s.num, i))
		}
		byNum(good)
		var keep []*shareStream
		for _, s := range good {
			if len(keep) < d.capab.K && (len(keep) == 0 || keep[len(keep)-1].num != s.num) {
				keep = append(keep, s)
				continue
			}
			s.stop()
			d.addSpare(s.server, s.num)
		}
		return plain, keep, nil
	}
}

// spare opens, at segment i, a share whose number none of in has: one a
// server listed already, or one of the next server asked. It fails as
// the download would without it when there is none left.
//
// With again (a search for corrupt blocks), it may also open a share
// whose number some of in have, from another server: a second candidate
// for that share. It then takes shares from servers none of in came from
// first, listing the next servers for them, before others: a hostile
// server that lists every number gives one candidate, not one of each
// (each candidate a Read, and each one more that does not open the
// segment up to 4,096 tries of files.Decoder.SearchAmong).
func (d *download) spare(ctx context.Context, i uint64, in []*shareStream, again bool) (*shareStream, error) {
	have := func(n int) bool {
		return slices.ContainsFunc(in, func(s *shareStream) bool { return s.num == n })
	}
	tried := func(server peer.ID, n int) bool {
		return slices.ContainsFunc(in, func(s *shareStream) bool { return s.server == server && s.num == n })
	}
	fresh := func(server peer.ID) bool {
		return !slices.ContainsFunc(in, func(s *shareStream) bool { return s.server == server })
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := d.failed(); err != nil {
			return nil, err
		}
		d.mu.Lock()
		var x int
		if !again {
			x = slices.IndexFunc(d.spares, func(sp spareShare) bool { return !have(sp.num) })
		} else {
			x = slices.IndexFunc(d.spares, func(sp spareShare) bool { return !have(sp.num) && fresh(sp.server) })
			if x < 0 {
				x = slices.IndexFunc(d.spares, func(sp spareShare) bool { return fresh(sp.server) })
			}
			if x < 0 && len(d.queue) == 0 {
				x = slices.IndexFunc(d.spares, func(sp spareShare) bool { return !have(sp.num) })
			}
			if x < 0 && len(d.queue) == 0 {
				x = slices.IndexFunc(d.spares, func(sp spareShare) bool { return !tried(sp.server, sp.num) })
			}
		}
		var sp spareShare
		if x >= 0 {
			sp = d.spares[x]
			d.spares = slices.Delete(d.spares, x, x+1)
		}
		d.mu.Unlock()
		if x >= 0 {
			s := d.open(ctx, sp.server, sp.num, i, 0)
			if s == nil {
				continue
			}
			if have(s.num) && (!again || tried(s.server, s.num)) {
				s.stop()
				continue
			}
			return s, nil
		}
		id, ok := d.nextServer()
		if !ok {
			return nil, d.notEnough(len(in))
		}
		for _, sh := range d.list(ctx, id) {
			d.addSpare(id, int(sh.ShareNumber))
		}
	}
}

// drop gives up a share that failed to give a block, and reports why.
func (d *download) drop(ctx context.Context, s *shareStream, err error) {
	s.stop()
	if ctx.Err() != nil {
		return
	}
	if errors.Is(err, files.ErrShareMismatch) {
		s.corrupt = true
		d.corrupt(ctx, s.server, s.num, err)
		return
	}
	d.readFailed(s.server, err)
}

// stopGrace is how long the end of a download waits for the Reads in
// flight to be answered before it cancels them.
var stopGrace = 2 * time.Second

// stopAll stops every share's reads and waits for the Reads in flight to
// end: for stopGrace, so that their coins are settled as their answers
// say, and then no longer: it cancels those of servers that do not
// answer (a hostile server whose share was stopped mid-file), whose
// coins stay reserved for them (Client.refreshReserved).
func (d *download) stopAll() {
	d.mu.Lock()
	streams := slices.Clone(d.streams)
	d.mu.Unlock()
	for _, s := range streams {
		s.stop()
	}
	grace := time.NewTimer(stopGrace)
	defer grace.Stop()
	for _, s := range streams {
		if s.done == nil {
			continue
		}
		select {
		case <-s.done:
			continue
		case <-grace.C:
		}
		for _, s := range streams {
			if s.cancel != nil {
				s.cancel()
			}
		}
		<-s.done
	}
	for _, s := range streams {
		if s.cancel != nil {
			s.cancel() // release the context
		}
	}
}

// finish stops the reads and completes the report: the shares used, by
// number, and what was paid.
func (d *download) finish() {
	d.stopAll()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rep.Shares = nil
	for _, s := range d.streams {
		if s.used && !s.corrupt {
			d.rep.Shares = append(d.rep.Shares, PutShare{Share: s.num, Server: s.server.String()})
		}
	}
	slices.SortStableFunc(d.rep.Shares, func(a, b PutShare) int { return a.Share - b.Share })
	d.rep.Total = d.bill.total() - d.rep.Unknown
}

func byNum(s []*shareStream) {
	slices.SortFunc(s, func(a, b *shareStream) int { return a.num - b.num })
}

// shareStream reads one share from one server sequentially, a block at a
// time, fetching windows of getWindow bytes one ahead of its reader.
type shareStream struct {
	d      *download
	server peer.ID
	num    int
	want   [32]byte  // hash of the body, from the header
	hash   hash.Hash // of the body so far, if read from its start and not checked whole
	win    []byte    // fetched and not yet used, from pos
	pos    int64     // share offset of win
	// fetchAt is where the next window starts; window is its length,
	// doubling up to getWindow.
	fetchAt int64
	window  uint64
	scratch []byte // a block split across two windows
	// used: gave blocks to segments that opened; corrupt: found corrupt.
	used, corrupt bool

	ahead   chan fetched
	stopped chan struct{}
	done    chan struct{}
	cancel  context.CancelFunc // of the reads' context
	once    sync.Once
}

type fetched struct {
	data []byte
	err  error
}

// block returns block i of the share, which must be the next one; it is
// valid until the next call.
func (s *shareStream) block(ctx context.Context, i uint64) ([]byte, error) {
	off, bl := s.d.capab.BlockRange(i)
	if off != s.pos {
		return nil, fmt.Errorf("client: share %d read out of order", s.num)
	}
	if len(s.win) == 0 {
		data, err := s.fetch(ctx)
		if err != nil {
			return nil, err
		}
		s.win = data
	}
	var b []byte
	if len(s.win) >= bl {
		b, s.win = s.win[:bl:bl], s.win[bl:]
	} else {
		s.scratch = append(s.scratch[:0], s.win...)
		s.win = nil
		for len(s.scratch) < bl {
			data, err := s.fetch(ctx)
			if err != nil {
				return nil, err
			}
			take := min(bl-len(s.scratch), len(data))
			s.scratch = append(s.scratch, data[:take]...)
			s.win = data[take:]
		}
		b = s.scratch
	}
	s.pos += int64(bl)
	if s.hash != nil {
		s.hash.Write(b)
	}
	return b, nil
}

// fetch returns the next window, starting the reads on first use.
func (s *shareStream) fetch(ctx context.Context) ([]byte, error) {
	if s.ahead == nil {
		s.start(ctx)
	}
	select {
	case f, ok := <-s.ahead:
		if !ok {
			return nil, errShortShare
		}
		return f.data, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// start reads the share's windows from fetchAt, one ahead of fetch, until
// its end, an error or stop.
func (s *shareStream) start(ctx context.Context) {
	s.ahead = make(chan fetched)
	s.stopped = make(chan struct{})
	s.done = make(chan struct{})
	ctx, s.cancel = context.WithCancel(ctx)
	d := s.d
	go func() {
		defer close(s.done)
		defer close(s.ahead)
		window := s.window
		for off := uint64(s.fetchAt); off < d.size; {
			select {
			case <-s.stopped:
				return
			default:
			}
			length := min(window, d.size-off)
			window = min(2*window, getWindow)
			data, err := d.readAt(ctx, s.server, s.num, off, length)
			if err == nil && uint64(len(data)) < length {
				err = errShortShare
			}
			select {
			case s.ahead <- fetched{data, err}:
			case <-s.stopped:
				return
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			off += length
		}
	}()
}

// stop ends the share's reads: a Read in flight ends on its own (its
// coins settled as its answer says) and nothing more is read. It does
// not wait for that Read: a hostile server that never answers it would
// hold the download up for the call's time and retries (stopAll, at the
// end, waits).
func (s *shareStream) stop() {
	s.once.Do(func() {
		if s.stopped != nil {
			close(s.stopped)
		}
		s.win, s.scratch = nil, nil
	})
}

// DefaultDownloadShare bounds a download when no download budget is set
// and the market has no history (client_history.go): it may spend at most
// 1/DefaultDownloadShare of the wallet's unspent value at its start.
// Downloads walk every server of the ring, expensive ones included, and a
// fresh client's ceiling is only the prices asked now, so without a bound
// servers that raise their prices could be paid whatever they ask. With
// history, the ceiling bounds each call instead.
const DefaultDownloadShare = 100

// downloadCap is the most one download may pay: no cap beyond the budget
// when a download budget is set, else a share of the unspent value. See
// [Client.downloadBound] for when it applies.
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
