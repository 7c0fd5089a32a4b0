package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"math/bits"
	"os"
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
	size     int64 // of the file, or -1 if unknown
}

// WithPutProgress has Put call fn as shares are written. fn is called from
// several goroutines, one call at a time.
func WithPutProgress(fn func(PutProgress)) PutOption {
	return func(o *putOptions) { o.progress = fn }
}

// WithPutSize tells Put the size of the file that r yields, so that it
// allocates space and writes shares while it reads r rather than after
// it. r must then yield exactly size bytes, or Put fails. Put finds the
// size of a reader with a Len method (*bytes.Reader, *strings.Reader,
// *bytes.Buffer) and of a regular *os.File by itself. A negative size is
// unknown.
func WithPutSize(size int64) PutOption {
	return func(o *putOptions) { o.size = size }
}

// putChunk is the most of one share that an upload buffers before it
// writes it: the length of one Write call (a single block may exceed it).
// putInFlight is the most Writes in flight to one server. Writes are
// covered by the allocation, not paid per call, so smaller chunks cost
// round trips, not money; an upload holds about putInFlight + 2 chunks
// per share of the servers it writes at once.
var (
	putChunk    = 128 << 10
	putInFlight = 2
)

// maxPlaceRounds bounds the rounds of placement: after servers fail, their
// shares go to the next eligible servers of the ring.
const maxPlaceRounds = 4

// Put encrypts and erasure-codes the file read from r (node/files, with
// the configured k and N) and places its shares: it walks the file's
// permuted ring (protocol.Ring), lets the market pick the first N servers
// within its ceiling and budget that are not penalised (pricing.Market
// Select), pays each server per call (Allocate, then the Writes and Close
// it covers) and, if a server fails, gives its shares to the next eligible
// servers. Put succeeds once shares sit on at least happy distinct
// servers; otherwise it fails with the market's explanation (a
// *pricing.SelectError) or [ErrUploadFailed]. It returns the capability,
// a secret that reads the file, and a report.
//
// Put works in memory of a few hundred KiB per share, whatever the file's
// size: it seals and codes the file a segment at a time (files.Encoder),
// and writes each share's blocks at their offsets in chunks of 128 KiB,
// two Writes in flight per server, and its header last. It keeps the
// ciphertext (never the plaintext) in a spool file of the client
// directory ([ClientSpoolDir]) until it returns, to write shares again
// on other servers; that takes disk space of about the file's size. When
// the file's size is known ([WithPutSize], or found from r), it
// allocates at the start and writes the first servers' shares as it
// reads r; otherwise it reads r to its end first.
func (c *Client) Put(ctx context.Context, r io.Reader, opts ...PutOption) (string, *PutReport, error) {
	if c.isClosed() {
		return "", nil, ErrClientClosed
	}
	o := putOptions{size: -1}
	for _, f := range opts {
		f(&o)
	}
	if o.size < 0 {
		o.size = readerSize(r)
	}
	if o.size > files.MaxFileSize {
		return "", nil, fmt.Errorf("client: %w: %d bytes", files.ErrTooLarge, o.size)
	}
	enc, err := files.NewEncoder(c.cfg.K, c.cfg.N)
	if err != nil {
		return "", nil, fmt.Errorf("client: %w", err)
	}
	sp, err := c.newSpool()
	if err != nil {
		return "", nil, fmt.Errorf("client: %w", err)
	}
	defer sp.close()
	si := enc.StorageIndex()
	u := &upload{
		c:     c,
		si:    si,
		lease: uint64(c.cfg.Lease / time.Second),
		enc:   enc,
		spool: sp,
		bill:  &opBill{op: pricing.OpUpload},
		o:     o,
		rep: &PutReport{StorageIndex: hex.EncodeToString(si[:]),
			K: c.cfg.K, Happy: c.cfg.Happy, N: c.cfg.N, Unit: c.unit},
		holders: make(map[int]peer.ID),
		failed:  make(map[peer.ID]bool),
	}
	if o.size >= 0 {
		u.setSize(uint64(o.size))
	}
	if err := u.run(ctx, r); err != nil {
		return "", u.rep, err
	}
	return enc.Capability().String(), u.rep, nil
}

// readerSize returns what is left to read of r if r can tell, else -1.
func readerSize(r io.Reader) int64 {
	switch v := r.(type) {
	case interface{ Len() int }:
		return int64(v.Len())
	case *os.File:
		fi, err := v.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return -1
		}
		pos, err := v.Seek(0, io.SeekCurrent)
		if err != nil || pos > fi.Size() {
			return -1
		}
		return fi.Size() - pos
	}
	return -1
}

// upload is the state of one Put.
type upload struct {
	c     *Client
	si    [files.StorageIndexSize]byte
	lease uint64
	enc   *files.Encoder
	spool *spoolFile
	bill  *opBill
	o     putOptions

	// Known from the start, or once the file is read.
	sized    bool
	fileSize uint64
	size     uint64         // of each share
	usage    protocol.Usage // of one share's allocation

	mu      sync.Mutex
	rep     *PutReport
	holders map[int]peer.ID
	failed  map[peer.ID]bool
	errs    []string
	fatal   error // a failure no other server can help with
	written uint64
	closed  int
}

// setSize sets the file's size, and with it the share size.
func (u *upload) setSize(size uint64) {
	c := u.c
	u.sized, u.fileSize = true, size
	u.size = uint64(files.ShareSize(c.cfg.K, c.cfg.N, size))
	u.usage = protocol.Usage{StoreBytes: u.size, StoreSeconds: u.lease, WriteBytes: u.size}
	u.rep.Size, u.rep.ShareSize = size, u.size
}

func (u *upload) run(ctx context.Context, r io.Reader) error {
	c := u.c
	if len(c.serverIDs()) == 0 {
		return fmt.Errorf("%w: the announcements file names none", ErrNoServers)
	}
	// Uploads skip servers that are down; downloads ask them all.
	ids, down := c.liveServers()
	if len(ids) == 0 {
		return fmt.Errorf("%w: none of the %d servers is connected (see `scrip wait-until-connected`)", ErrNoServers, down)
	}
	live := r // read by the first servers' pass
	if !u.sized {
		// Allocate needs the share size: read the file to its end
		// first, keeping the ciphertext. That may take a while: look
		// at the servers again after.
		if err := u.seal(ctx, r, nil); err != nil {
			return err
		}
		live = nil
		if ids, down = c.liveServers(); len(ids) == 0 {
			return fmt.Errorf("%w: none of the %d servers is connected (see `scrip wait-until-connected`)", ErrNoServers, down)
		}
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
	todo := make([]int, c.cfg.N)
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
		var order []peer.ID
		for i, sh := range todo {
			id := servers[i%len(servers)]
			if _, ok := assign[id]; !ok {
				order = append(order, id)
			}
			assign[id] = append(assign[id], uint32(sh))
			limitOf[id] = limits[i%len(servers)]
		}
		todo, err = u.placeAll(ctx, order, assign, limitOf, live)
		live = nil
		if err != nil {
			return err
		}
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
	for sh := range c.cfg.N {
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

// errSizeChanged reports a file that was not the size announced.
var errSizeChanged = &kindError{msg: "client: the file is not the size it was said to be (did it change while it was read?)", kind: errAPIBadRequest}

// seal reads the plaintext from r to its end, encrypts and codes it a
// segment at a time, appends the ciphertext to the spool and, if p is not
// nil, hands each segment's blocks to p's servers. It stops early, with
// u.fatal, only if p's servers all failed for a reason no other server
// would avoid.
func (u *upload) seal(ctx context.Context, r io.Reader, p *pass) error {
	_, err := u.enc.SealFrom(r, func(i uint64, sealed []byte, blocks [][]byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if u.sized && u.enc.Size() > u.fileSize {
			return errSizeChanged
		}
		if _, err := u.spool.f.Write(sealed); err != nil {
			return fmt.Errorf("client: spool: %w", err)
		}
		if p == nil {
			return nil
		}
		if p.alive() == 0 {
			if err := u.fatalErr(); err != nil {
				return errAbandoned
			}
			return nil
		}
		return p.feed(ctx, blocks, u.enc.Capability() != nil)
	})
	switch {
	case errors.Is(err, errAbandoned):
		return err
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, errSizeChanged):
		return err
	case err != nil:
		return fmt.Errorf("client: %w", err)
	}
	if u.sized && u.enc.Size() != u.fileSize {
		return errSizeChanged
	}
	if !u.sized {
		u.setSize(u.enc.Size())
	}
	if p == nil {
		return nil
	}
	return p.finish(ctx, nil)
}

// errAbandoned stops a pass whose servers all failed fatally.
var errAbandoned = errors.New("client: upload abandoned")

// replay codes the segments again from the spool for p's servers.
func (u *upload) replay(ctx context.Context, p *pass) error {
	capab := u.enc.Capability()
	coder, err := files.NewCoder(capab.K, capab.N)
	if err != nil {
		return err
	}
	buf := make([]byte, capab.SealedLen(0))
	m := capab.Segments()
	var off int64
	for i := range m {
		if p.alive() == 0 {
			return nil
		}
		sealed := buf[:capab.SealedLen(i)]
		if _, err := u.spool.f.ReadAt(sealed, off); err != nil {
			return fmt.Errorf("client: spool: %w", err)
		}
		off += int64(len(sealed))
		blocks, err := coder.Blocks(sealed)
		if err != nil {
			return err
		}
		if err := p.feed(ctx, blocks, i+1 == m); err != nil {
			return err
		}
	}
	return p.finish(ctx, u.enc.ShareHash)
}

func (u *upload) fatalErr() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.fatal
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

// placeAll places shares on servers, UploadParallelism servers at a
// time, and returns the shares left unplaced. Each group of servers gets
// one pass over the file: the first, if live is not nil, as live is read
// and sealed; the others from the spool.
func (u *upload) placeAll(ctx context.Context, order []peer.ID, assign map[peer.ID][]uint32, limits map[peer.ID]uint64, live io.Reader) ([]int, error) {
	par := u.c.cfg.UploadParallelism
	var left []int
	for g := 0; g < len(order); g += par {
		p := u.newPass(order[g:min(g+par, len(order))], assign, limits)
		var wg sync.WaitGroup
		for _, t := range p.targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(t.gone)
				t.placed, t.err = u.place(ctx, p, t)
			}()
		}
		var err error
		if live != nil {
			err = u.seal(ctx, live, p)
			live = nil
		} else {
			err = u.replay(ctx, p)
		}
		p.end()
		wg.Wait()
		u.mu.Lock()
		for _, t := range p.targets {
			for _, n := range t.placed {
				u.holders[int(n)] = t.server
			}
			if t.err != nil {
				u.failed[t.server] = true
				u.errs = append(u.errs, fmt.Sprintf("%s: %v", shortID(t.server), t.err))
				if u.fatal == nil && fatalPayment(t.err) {
					u.fatal = t.err
				}
			}
			for _, n := range t.nums {
				if !slices.Contains(t.placed, n) {
					left = append(left, int(n))
				}
			}
		}
		u.mu.Unlock()
		if errors.Is(err, errAbandoned) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(left)
	return left, nil
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
	u.o.progress(PutProgress{SharesPlaced: u.closed, SharesTotal: u.c.cfg.N, BytesWritten: u.written,
		BytesTotal: u.size * uint64(u.c.cfg.N)})
}

// pass writes the shares of a group of servers in one sweep over the
// file: each segment is coded once and its blocks go to the servers that
// hold them, a chunk (putChunk) of each share at a time; the headers,
// known once every block was made, go last, each followed by a Close. A
// slow server slows the sweep: the channels to the servers hold one
// chunk each.
type pass struct {
	u       *upload
	targets []*target
	owner   []*target   // by share number: its server in this pass, or nil
	buf     [][]byte    // by share number: blocks not yet sent
	off     []uint64    // by share number: the share offset of buf
	hashers []hash.Hash // by share number: of the body sent, if checked
}

// target is one server of a pass and the shares it is to hold.
type target struct {
	server peer.ID
	nums   []uint32
	limit  uint64
	ch     chan shareWrite
	gone   chan struct{} // closed when its goroutine ends
	// Results, read once gone is closed.
	placed []uint32
	err    error
}

// shareWrite is one Write of a share; the header comes last and is
// followed by the share's Close.
type shareWrite struct {
	share  uint32
	off    uint64
	data   []byte
	header bool
}

// chunkPool recycles the buffers of share chunks.
var chunkPool sync.Pool

func getChunk() []byte {
	if b, ok := chunkPool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, putChunk)
}

func putChunkBuf(b []byte) {
	chunkPool.Put(&b)
}

func (u *upload) newPass(group []peer.ID, assign map[peer.ID][]uint32, limits map[peer.ID]uint64) *pass {
	n := u.c.cfg.N
	hs := uint64(files.HeaderFixedSize + 32*n)
	p := &pass{u: u, owner: make([]*target, n), buf: make([][]byte, n), off: make([]uint64, n)}
	if u.enc.Capability() != nil {
		// The pass codes the segments again from the spool: check what
		// it writes against the hashes of the first coding.
		p.hashers = make([]hash.Hash, n)
	}
	for _, id := range group {
		t := &target{server: id, nums: assign[id], limit: limits[id], ch: make(chan shareWrite, 1), gone: make(chan struct{})}
		p.targets = append(p.targets, t)
		for _, j := range t.nums {
			p.owner[j] = t
			p.off[j] = hs
			if p.hashers != nil {
				p.hashers[j] = files.NewShareHash(int(j))
			}
		}
	}
	return p
}

func (t *target) isGone() bool {
	select {
	case <-t.gone:
		return true
	default:
		return false
	}
}

// alive returns the number of servers still being written.
func (p *pass) alive() int {
	n := 0
	for _, t := range p.targets {
		if !t.isGone() {
			n++
		}
	}
	return n
}

// feed adds one segment's blocks to the shares of the pass, and sends
// every chunk that is full, or all of them after the last segment.
func (p *pass) feed(ctx context.Context, blocks [][]byte, last bool) error {
	for j, t := range p.owner {
		if t == nil || t.isGone() {
			continue
		}
		b := blocks[j]
		if p.hashers != nil {
			p.hashers[j].Write(b)
		}
		if len(p.buf[j]) > 0 && len(p.buf[j])+len(b) > putChunk {
			if err := p.flush(ctx, j); err != nil {
				return err
			}
		}
		if p.buf[j] == nil {
			p.buf[j] = getChunk()
		}
		p.buf[j] = append(p.buf[j], b...)
		if last {
			if err := p.flush(ctx, j); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush sends share j's buffered blocks to its server.
func (p *pass) flush(ctx context.Context, j int) error {
	w := shareWrite{share: uint32(j), off: p.off[j], data: p.buf[j]}
	p.off[j] += uint64(len(w.data))
	p.buf[j] = nil
	return p.send(ctx, p.owner[j], w)
}

// send hands w to t, or drops it if t's goroutine has ended.
func (p *pass) send(ctx context.Context, t *target, w shareWrite) error {
	select {
	case t.ch <- w:
		return nil
	case <-t.gone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// finish sends every share's header, once all its blocks are sent. If
// want is not nil, the shares' bodies were coded again from the spool,
// and each is first checked against want, the hash of its first coding.
func (p *pass) finish(ctx context.Context, want func(j int) [32]byte) error {
	enc := p.u.enc
	for j, t := range p.owner {
		if t == nil || t.isGone() {
			continue
		}
		if want != nil && [32]byte(p.hashers[j].Sum(nil)) != want(j) {
			return fmt.Errorf("client: share %d coded again from the spool differs from its first coding: the spool file was damaged", j)
		}
	}
	for j, t := range p.owner {
		if t == nil || t.isGone() {
			continue
		}
		if err := p.send(ctx, t, shareWrite{share: uint32(j), data: enc.Header(j), header: true}); err != nil {
			return err
		}
	}
	return nil
}

// end tells every server of the pass that nothing more comes.
func (p *pass) end() {
	for _, t := range p.targets {
		close(t.ch)
	}
}

// place allocates t's shares on its server, paying at most t.limit a
// share, then writes the chunks of the pass that reach it and closes each
// share after its header. It returns the shares the server holds.
func (u *upload) place(ctx context.Context, p *pass, t *target) (_ []uint32, err error) {
	c := u.c
	server, nums := t.server, t.nums
	usage := u.usage
	usage.StoreBytes *= uint64(len(nums))
	usage.WriteBytes *= uint64(len(nums))
	// A limit of 0 (a ceiling of 0: servers that announce free
	// storage) pays nothing, whatever they ask once called.
	b := &callBill{op: u.bill, limit: satMul(t.limit, uint64(len(nums))), limited: true}
	var resp *pb.AllocateResponse
	err = c.paidCall(ctx, server, "allocate", usage, b, func(ctx context.Context) (err error) {
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
	// Every upload has a fresh key, so no server holds a share of it
	// before it is written (already_have), nor does anyone else write
	// one (a share in neither list): a server that answers so took the
	// allocation's coins for shares it will not store. Those shares go
	// elsewhere, and the server is scored for it.
	var placed []uint32
	writing := make(map[uint32]bool)
	for _, n := range resp.Allocated {
		if slices.Contains(nums, n) && !slices.Contains(resp.AlreadyHave, n) {
			writing[n] = true
		}
	}
	var lie error
	if len(writing) < len(nums) {
		lie = fmt.Errorf("client: the server allocated %d of the %d shares of a new file it was paid for (and says it holds %d)",
			len(writing), len(nums), len(resp.AlreadyHave))
		c.scores.Report(server, pricing.EventCoinsTaken)
		c.log.Warn("a server did not allocate the shares of a new file it was paid for", "server", server, "err", lie)
	} else {
		c.market.Served(server)
	}
	// The allocation paid for writing its shares: a server that does not
	// take them (a Write or Close refused, or not answered) took the
	// coins without service, whether it failed or it lies; otherwise
	// every upload that reaches it would pay it again.
	defer func() {
		if err != nil && err != lie && ctx.Err() == nil {
			c.scores.Report(server, pricing.EventCoinsTaken)
		}
	}()
	// Up to putInFlight Writes at a time; a share's header waits for
	// its body, and its Close for its header.
	var (
		mu      sync.Mutex
		wrote   = make(map[uint32]uint64)
		werr    error
		pending sync.WaitGroup
		slots   = make(chan struct{}, putInFlight)
	)
	write := func(w shareWrite) error {
		err := c.storage.Write(ctx, server, &pb.Write{StorageIndex: u.si[:], ShareNumber: w.share, Offset: w.off, Data: w.data})
		c.observeCall("write", server, err, nil)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if werr == nil {
				werr = err
				u.addCall(CallReport{Server: server.String(), Op: "write", Shares: []int{int(w.share)}, Bytes: wrote[w.share], Error: err.Error()})
			}
			return err
		}
		wrote[w.share] += uint64(len(w.data))
		u.progress(0, uint64(len(w.data)))
		return nil
	}
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return werr
	}
	defer pending.Wait()
	for w := range t.ch {
		if !writing[w.share] || failed() != nil {
			if !w.header {
				putChunkBuf(w.data)
			}
			if err := failed(); err != nil {
				return placed, err
			}
			continue
		}
		if !w.header {
			slots <- struct{}{}
			pending.Add(1)
			go func() {
				defer pending.Done()
				if write(w) == nil {
					putChunkBuf(w.data)
				}
				<-slots
			}()
			continue
		}
		pending.Wait()
		if err := failed(); err != nil {
			return placed, err
		}
		if err := write(w); err != nil {
			return placed, err
		}
		u.addCall(CallReport{Server: server.String(), Op: "write", Shares: []int{int(w.share)}, Bytes: wrote[w.share]})
		err := c.storage.Close(ctx, server, &pb.Close{StorageIndex: u.si[:], ShareNumber: w.share})
		c.observeCall("close", server, err, nil)
		cr := CallReport{Server: server.String(), Op: "close", Shares: []int{int(w.share)}}
		if err != nil {
			cr.Error = err.Error()
		}
		u.addCall(cr)
		if err != nil {
			return placed, err
		}
		placed = append(placed, w.share)
		crashpoint.Hit("client/put/after-share")
		u.progress(1, 0)
	}
	pending.Wait()
	if err := failed(); err != nil {
		return placed, err
	}
	if lie != nil {
		return placed, lie
	}
	return placed, ctx.Err()
}

// paidCall runs fn, a paid call to server with the given usage, with bill
// b in its context. A server that refuses bearer coins (RATE_LIMITED:
// too much undeposited bearer value) gets coins designated to it, swapped
// at the mint, and the call is made once more; so does a server that
// refuses coins of a revoked keyset, once they are recouped.
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
	if errors.Is(err, protocol.ErrRevokedKeyset) {
		// The mint has revoked the keyset of the coins paid with, and
		// the server knows it before the housekeeping did: recoup them
		// for coins of the new keyset, and pay again.
		if c.recoupAfterRefusal(ctx, server) {
			err = fn(ctx)
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

// satMul returns a·b, or 2^64 − 1 if that overflows.
func satMul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
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
