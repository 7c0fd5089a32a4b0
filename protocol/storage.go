package protocol

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/protocol/pb"
)

// The storage service, /scrip/storage/1.0.0, after Tahoe-LAFS
// RIStorageServer without lease secrets: whoever pays extends a lease.
// [StorageServer] decodes requests and serves them from a
// [StorageBackend] behind a [Paywall]; [StorageClient] calls it.

// Limits of storage calls.
const (
	// MaxShareNumbers bounds the share numbers of one Allocate, and the
	// share numbers themselves: shares 0 to 255 of each storage index, as
	// in Tahoe-LAFS. So a List answer holds at most 256 shares.
	MaxShareNumbers = 256
	// MaxLeaseSeconds bounds the lease_seconds of one Allocate or AddLease:
	// about 100 years.
	MaxLeaseSeconds = 100 * 365 * 24 * 60 * 60
	// MaxCoinStatus bounds the coins of one CoinStatus.
	MaxCoinStatus = 1024
	// MaxAdviceSize bounds the reason of one AdviseCorrupt, in bytes.
	MaxAdviceSize = 1024
)

// Writes are covered by the allocation, which pays for writing
// allocated_size bytes per share: a backend takes the writes to an open
// share up to [WriteBudget] of its size, each counted as [WriteCharge] of
// its length, and refuses the rest with an error wrapping
// [ErrBadRequest]. A writer may so write its share twice over (a retry of
// every write), but not rewrite it for free for as long as its lease
// lasts.
const (
	// MinWriteCharge is the least a Write counts, however short: a write
	// costs the server a disk sync whatever its length.
	MinWriteCharge = 4096
	// MinWriteBudget is the least write budget of a share.
	MinWriteBudget = 64 << 10
)

// WriteBudget returns how many bytes (counted by [WriteCharge]) may be
// written in all to an open share of size bytes: twice its size, and at
// least [MinWriteBudget].
func WriteBudget(size uint64) uint64 {
	if size > math.MaxUint64/2 {
		return math.MaxUint64
	}
	return max(2*size, MinWriteBudget)
}

// WriteCharge returns what a write of n bytes counts against a share's
// [WriteBudget]: n, and at least [MinWriteCharge].
func WriteCharge(n int) uint64 {
	return max(uint64(max(n, 0)), MinWriteCharge)
}

// ShareInfo describes one share a backend holds.
type ShareInfo struct {
	// Number is the share number.
	Number uint32
	// Size is the share's allocated size in bytes.
	Size uint64
	// LeaseExpires is when the share's lease ends; the backend forgets the
	// share then.
	LeaseExpires time.Time
}

// Allocation asks a backend to reserve shares of one storage index.
type Allocation struct {
	// Writer is the peer that may write and close the new shares.
	Writer peer.ID
	// StorageIndex is the storage index.
	StorageIndex [StorageIndexSize]byte
	// Shares are the share numbers, distinct.
	Shares []uint32
	// Size is the size of each share, in bytes, at most the backend's
	// MaxShareSize.
	Size uint64
	// Lease is how long the shares are kept, or how much longer for shares
	// held already.
	Lease time.Duration
}

// Allocated is a backend's answer to an [Allocation].
type Allocated struct {
	// AlreadyHave are the requested shares the backend holds, closed.
	// Their leases are extended if they are at most the allocation's
	// size (which is what the call paid for); a larger one is listed and
	// left as it is.
	AlreadyHave []uint32
	// Allocated are the shares now open for Write by the writer: new
	// ones, and ones this writer had allocated before with the same size
	// and not closed (their leases are extended). A share another writer
	// is writing, or this writer with another size, is in neither list.
	Allocated []uint32
	// LeaseExpires is the latest lease end among the shares listed.
	LeaseExpires time.Time
}

// StorageSpace is what a backend offers.
type StorageSpace struct {
	// Available is the space that can still be allocated, in bytes.
	Available uint64
	// MaxShareSize is the largest share size the backend accepts.
	MaxShareSize uint64
}

// StorageBackend holds shares for a [StorageServer]. Package node
// implements it on disk; [MemBackend] keeps shares in memory. Its methods
// are called concurrently. Errors wrapping [ErrNotFound], [ErrNoSpace] or
// [ErrBadRequest] are answered with their codes; others as INTERNAL.
//
// A share is open from its allocation until its writer closes it, then
// closed and immutable. A share whose lease has ended is gone: the backend
// reports it nowhere and reuses its space.
type StorageBackend interface {
	// Space returns what the backend offers now.
	Space(ctx context.Context) (StorageSpace, error)
	// CheckAllocate reports whether Allocate(a) would succeed now,
	// changing nothing: an error wrapping [ErrNoSpace] if the new shares
	// do not fit.
	CheckAllocate(ctx context.Context, a *Allocation) error
	// Allocate reserves a's new shares and extends the leases of those
	// held already (see [Allocated]), all or nothing.
	Allocate(ctx context.Context, a *Allocation) (*Allocated, error)
	// Write writes data at offset into an open share of writer's. The
	// write must lie inside the share's size, and within the share's
	// write budget ([WriteBudget]).
	Write(ctx context.Context, writer peer.ID, si [StorageIndexSize]byte, share uint32, offset uint64, data []byte) error
	// Close closes an open share of writer's.
	Close(ctx context.Context, writer peer.ID, si [StorageIndexSize]byte, share uint32) error
	// List returns the closed shares of a storage index, by share number.
	List(ctx context.Context, si [StorageIndexSize]byte) ([]ShareInfo, error)
	// Stat returns one closed share, or an error wrapping [ErrNotFound].
	Stat(ctx context.Context, si [StorageIndexSize]byte, share uint32) (ShareInfo, error)
	// Read returns up to length bytes of a closed share from offset:
	// fewer only at the end of the share. An offset past the end is a bad
	// request.
	Read(ctx context.Context, si [StorageIndexSize]byte, share uint32, offset, length uint64) ([]byte, error)
	// AddLease extends by lease (from its current end, or from now if
	// that is later) the lease of each share of a storage index listed in
	// shares (as List returned them, when the call was priced) that the
	// backend still holds closed with the size listed, and returns the
	// latest lease end; an error wrapping [ErrNotFound] if it holds none
	// of them. Other shares, such as those closed since, are left as they
	// are: they were not paid for.
	AddLease(ctx context.Context, si [StorageIndexSize]byte, shares []ShareInfo, lease time.Duration) (time.Time, error)
	// AdviseCorrupt notes a client's report that a share looks corrupt.
	AdviseCorrupt(ctx context.Context, si [StorageIndexSize]byte, share uint32, reason string) error
}

// StorageUsage returns the usage of a storage request, as the price
// schedule charges it (the table in SPEC.md §8), and whether the
// operation is paid at all. held is the total size of the closed shares
// the server holds for the storage index (when it checks the call); only
// AddLease uses it. Requests
// whose usage overflows are refused with an error wrapping
// [ErrBadRequest].
//
//	Allocate  store allocated_size × #shares for lease_seconds, write allocated_size × #shares
//	AddLease  store held for lease_seconds
//	Read      read length
//	List      nothing but the per-call price
//	others    free
func StorageUsage(req *pb.StorageRequest, held uint64) (u Usage, paid bool, err error) {
	switch op := req.Op.(type) {
	case *pb.StorageRequest_Allocate:
		hi, total := bits.Mul64(op.Allocate.AllocatedSize, uint64(len(op.Allocate.ShareNumbers)))
		if hi != 0 {
			return Usage{}, true, fmt.Errorf("%w: allocation size overflows", ErrBadRequest)
		}
		return Usage{StoreBytes: total, StoreSeconds: op.Allocate.LeaseSeconds, WriteBytes: total}, true, nil
	case *pb.StorageRequest_AddLease:
		return Usage{StoreBytes: held, StoreSeconds: op.AddLease.LeaseSeconds}, true, nil
	case *pb.StorageRequest_Read:
		return Usage{ReadBytes: op.Read.Length}, true, nil
	case *pb.StorageRequest_List:
		return Usage{}, true, nil
	}
	return Usage{}, false, nil
}

// StorageServer serves the storage protocol from a [StorageBackend],
// charging paid operations through a [Paywall].
type StorageServer struct {
	backend StorageBackend
	pw      *Paywall
	impl    string
}

// StorageOption configures [NewStorageServer].
type StorageOption func(*StorageServer)

// WithImplementation sets the implementation text of Version answers.
func WithImplementation(s string) StorageOption {
	return func(st *StorageServer) { st.impl = s }
}

// NewStorageServer returns a storage server on backend whose paid calls go
// through pw. Default implementation text: "scrip".
func NewStorageServer(backend StorageBackend, pw *Paywall, opts ...StorageOption) *StorageServer {
	s := &StorageServer{backend: backend, pw: pw, impl: "scrip"}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Handler returns the [Handler] of the storage protocol.
func (s *StorageServer) Handler() Handler {
	return s.pw.Handler(StorageID, s.decode)
}

// Register serves the storage protocol on h, which must be the paywall's
// peer, with the stream options given.
func (s *StorageServer) Register(h host.Host, opts ...HandlerOption) error {
	if h.ID() != s.pw.Self() {
		return fmt.Errorf("protocol: storage server of %s registered on host %s", s.pw.Self(), h.ID())
	}
	h.SetStreamHandler(libp2pprotocol.ID(StorageID), NewStreamHandler(StorageID, s.Handler(), opts...))
	return nil
}

func storageIndex(b []byte) ([StorageIndexSize]byte, error) {
	if len(b) != StorageIndexSize {
		return [StorageIndexSize]byte{}, badRequest(fmt.Sprintf("storage index is %d bytes, want %d", len(b), StorageIndexSize))
	}
	return [StorageIndexSize]byte(b), nil
}

func respond(m *pb.StorageResponse) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("protocol: encoding response: %w", err)
	}
	return b, nil
}

func unixOf(t time.Time) uint64 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return uint64(t.Unix())
}

func leaseOf(seconds uint64) (time.Duration, error) {
	if seconds == 0 || seconds > MaxLeaseSeconds {
		return 0, badRequest(fmt.Sprintf("lease_seconds must be 1 to %d", MaxLeaseSeconds))
	}
	return time.Duration(seconds) * time.Second, nil
}

// backendError passes a backend's sentinel errors on and hides the rest.
func backendError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*Error](err); ok {
		return err
	}
	for _, s := range []error{ErrNotFound, ErrNoSpace, ErrBadRequest} {
		if errors.Is(err, s) {
			return &Error{Code: CodeOf(s), Message: strings.TrimPrefix(err.Error(), s.Error()+": ")}
		}
	}
	return internalOnly(err)
}

// decode is the storage [Decoder].
func (s *StorageServer) decode(ctx context.Context, remote peer.ID, body []byte) (*Operation, error) {
	req := new(pb.StorageRequest)
	if err := proto.Unmarshal(body, req); err != nil {
		return nil, badRequest("body does not decode")
	}
	op := &Operation{RequestID: req.RequestId, ScheduleID: req.ScheduleId}
	switch x := req.Op.(type) {
	case *pb.StorageRequest_Version:
		op.Serve = s.version
	case *pb.StorageRequest_Prices:
		op.Serve = s.prices
	case *pb.StorageRequest_Allocate:
		return s.allocate(op, remote, req, x.Allocate)
	case *pb.StorageRequest_Write:
		si, err := storageIndex(x.Write.StorageIndex)
		if err != nil {
			return nil, err
		}
		w := x.Write
		op.Serve = func(ctx context.Context) ([]byte, error) {
			if len(w.Data) > MaxWriteSize {
				return nil, badRequest("write too large")
			}
			if err := s.backend.Write(ctx, remote, si, w.ShareNumber, w.Offset, w.Data); err != nil {
				return nil, backendError(err)
			}
			return respond(&pb.StorageResponse{Op: &pb.StorageResponse_Write{Write: &pb.WriteResponse{}}})
		}
	case *pb.StorageRequest_Close:
		si, err := storageIndex(x.Close.StorageIndex)
		if err != nil {
			return nil, err
		}
		op.Serve = func(ctx context.Context) ([]byte, error) {
			if err := s.backend.Close(ctx, remote, si, x.Close.ShareNumber); err != nil {
				return nil, backendError(err)
			}
			return respond(&pb.StorageResponse{Op: &pb.StorageResponse_Close{Close: &pb.CloseResponse{}}})
		}
	case *pb.StorageRequest_List:
		si, err := storageIndex(x.List.StorageIndex)
		if err != nil {
			return nil, err
		}
		op.Paid = true
		op.Serve = func(ctx context.Context) ([]byte, error) {
			shares, err := s.backend.List(ctx, si)
			if err != nil {
				return nil, backendError(err)
			}
			// Only share numbers a client can allocate are listed, so
			// that the answer is bounded (about 8 kB) and always fits
			// the response cap: a paid answer must never be refused
			// after its coins are recorded.
			out := &pb.ListResponse{}
			for _, sh := range shares {
				if sh.Number >= MaxShareNumbers {
					continue
				}
				out.Shares = append(out.Shares, &pb.Share{ShareNumber: sh.Number, Size: sh.Size, LeaseExpires: unixOf(sh.LeaseExpires)})
			}
			return respond(&pb.StorageResponse{Op: &pb.StorageResponse_List{List: out}})
		}
	case *pb.StorageRequest_Read:
		return s.read(op, req, x.Read)
	case *pb.StorageRequest_AddLease:
		return s.addLease(op, req, x.AddLease)
	case *pb.StorageRequest_AdviseCorrupt:
		si, err := storageIndex(x.AdviseCorrupt.StorageIndex)
		if err != nil {
			return nil, err
		}
		if len(x.AdviseCorrupt.Reason) > MaxAdviceSize {
			return nil, badRequest("reason too long")
		}
		op.Serve = func(ctx context.Context) ([]byte, error) {
			if err := s.backend.AdviseCorrupt(ctx, si, x.AdviseCorrupt.ShareNumber, x.AdviseCorrupt.Reason); err != nil {
				return nil, backendError(err)
			}
			return respond(&pb.StorageResponse{Op: &pb.StorageResponse_AdviseCorrupt{AdviseCorrupt: &pb.AdviseCorruptResponse{}}})
		}
	case *pb.StorageRequest_CoinStatus:
		return s.coinStatus(op, x.CoinStatus)
	default:
		return nil, badRequest("unknown operation")
	}
	return op, nil
}

func (s *StorageServer) version(ctx context.Context) ([]byte, error) {
	sp, err := s.backend.Space(ctx)
	if err != nil {
		return nil, backendError(err)
	}
	return respond(&pb.StorageResponse{Op: &pb.StorageResponse_Version{Version: &pb.VersionResponse{
		Protocols:      []string{StorageID},
		MaxShareSize:   sp.MaxShareSize,
		AvailableSpace: sp.Available,
		MaxWriteSize:   MaxWriteSize,
		MaxReadSize:    MaxReadSize,
		Implementation: s.impl,
	}}})
}

func (s *StorageServer) prices(ctx context.Context) ([]byte, error) {
	cur, _, err := s.pw.Prices().Current(s.pw.Now())
	if err != nil {
		return nil, internalOnly(err)
	}
	return respond(&pb.StorageResponse{Op: &pb.StorageResponse_Prices{Prices: &pb.PricesResponse{Schedule: cur.PB()}}})
}

func (s *StorageServer) allocate(op *Operation, remote peer.ID, req *pb.StorageRequest, a *pb.Allocate) (*Operation, error) {
	si, err := storageIndex(a.StorageIndex)
	if err != nil {
		return nil, err
	}
	n := len(a.ShareNumbers)
	if n == 0 || n > MaxShareNumbers {
		return nil, badRequest(fmt.Sprintf("allocate 1 to %d shares", MaxShareNumbers))
	}
	var seen [MaxShareNumbers]bool
	for _, sh := range a.ShareNumbers {
		if sh >= MaxShareNumbers {
			return nil, badRequest(fmt.Sprintf("share numbers are 0 to %d", MaxShareNumbers-1))
		}
		if seen[sh] {
			return nil, badRequest("a share number twice")
		}
		seen[sh] = true
	}
	if a.AllocatedSize == 0 {
		return nil, badRequest("allocated_size must be positive")
	}
	lease, err := leaseOf(a.LeaseSeconds)
	if err != nil {
		return nil, err
	}
	if op.Usage, _, err = StorageUsage(req, 0); err != nil {
		return nil, badRequest("allocation size overflows")
	}
	alloc := &Allocation{Writer: remote, StorageIndex: si, Shares: a.ShareNumbers, Size: a.AllocatedSize, Lease: lease}
	op.Paid = true
	op.Check = func(ctx context.Context) error {
		sp, err := s.backend.Space(ctx)
		if err != nil {
			return backendError(err)
		}
		if a.AllocatedSize > sp.MaxShareSize {
			return &Error{Code: pb.Code_NO_SPACE, Message: fmt.Sprintf("shares of at most %d bytes", sp.MaxShareSize)}
		}
		return backendError(s.backend.CheckAllocate(ctx, alloc))
	}
	op.Serve = func(ctx context.Context) ([]byte, error) {
		got, err := s.backend.Allocate(ctx, alloc)
		if err != nil {
			return nil, backendError(err)
		}
		return respond(&pb.StorageResponse{Op: &pb.StorageResponse_Allocate{Allocate: &pb.AllocateResponse{
			AlreadyHave:  got.AlreadyHave,
			Allocated:    got.Allocated,
			LeaseExpires: unixOf(got.LeaseExpires),
		}}})
	}
	return op, nil
}

func (s *StorageServer) read(op *Operation, req *pb.StorageRequest, r *pb.Read) (*Operation, error) {
	si, err := storageIndex(r.StorageIndex)
	if err != nil {
		return nil, err
	}
	if r.Length == 0 || r.Length > MaxReadSize {
		return nil, badRequest(fmt.Sprintf("read 1 to %d bytes", MaxReadSize))
	}
	op.Usage, _, _ = StorageUsage(req, 0)
	op.Paid, op.Replay = true, true
	op.Check = func(ctx context.Context) error {
		sh, err := s.backend.Stat(ctx, si, r.ShareNumber)
		if err != nil {
			return backendError(err)
		}
		if r.Offset > sh.Size {
			return badRequest("offset past the end of the share")
		}
		return nil
	}
	op.Serve = func(ctx context.Context) ([]byte, error) {
		data, err := s.backend.Read(ctx, si, r.ShareNumber, r.Offset, r.Length)
		if err != nil {
			return nil, backendError(err)
		}
		return respond(&pb.StorageResponse{Op: &pb.StorageResponse_Read{Read: &pb.ReadResponse{Data: data}}})
	}
	return op, nil
}

func (s *StorageServer) addLease(op *Operation, req *pb.StorageRequest, a *pb.AddLease) (*Operation, error) {
	si, err := storageIndex(a.StorageIndex)
	if err != nil {
		return nil, err
	}
	lease, err := leaseOf(a.LeaseSeconds)
	if err != nil {
		return nil, err
	}
	op.Paid = true
	// The price depends on the shares held, so it is computed in Check,
	// once the request's turn has come, and Serve extends exactly the
	// shares priced: not those closed between pricing and serving (while
	// the coins are verified, deposited or recorded).
	var priced []ShareInfo
	op.Check = func(ctx context.Context) error {
		all, err := s.backend.List(ctx, si)
		if err != nil {
			return backendError(err)
		}
		var shares []ShareInfo // those List answers: numbered below MaxShareNumbers
		var held uint64
		for _, sh := range all {
			if sh.Number >= MaxShareNumbers {
				continue
			}
			shares = append(shares, sh)
			var carry uint64
			if held, carry = bits.Add64(held, sh.Size, 0); carry != 0 {
				held = math.MaxUint64
			}
		}
		if held == 0 {
			return &Error{Code: pb.Code_NOT_FOUND, Message: "no shares of this storage index"}
		}
		op.Usage, _, _ = StorageUsage(req, held)
		priced = shares
		return nil
	}
	op.Serve = func(ctx context.Context) ([]byte, error) {
		if len(priced) == 0 {
			return nil, &Error{Code: pb.Code_NOT_FOUND, Message: "no shares of this storage index"}
		}
		until, err := s.backend.AddLease(ctx, si, priced, lease)
		if err != nil {
			return nil, backendError(err)
		}
		return respond(&pb.StorageResponse{Op: &pb.StorageResponse_AddLease{AddLease: &pb.AddLeaseResponse{LeaseExpires: unixOf(until)}}})
	}
	return op, nil
}

func (s *StorageServer) coinStatus(op *Operation, c *pb.CoinStatus) (*Operation, error) {
	if len(c.CoinPubs) > MaxCoinStatus {
		return nil, badRequest(fmt.Sprintf("at most %d coins", MaxCoinStatus))
	}
	pubs := make([][32]byte, len(c.CoinPubs))
	for i, p := range c.CoinPubs {
		if len(p) != 32 {
			return nil, badRequest(fmt.Sprintf("coin %d: public key is %d bytes, want 32", i, len(p)))
		}
		pubs[i] = [32]byte(p)
	}
	op.Serve = func(ctx context.Context) ([]byte, error) {
		st, err := s.pw.Spent().CoinStatus(ctx, pubs)
		if err != nil {
			return nil, internalOnly(err)
		}
		out := &pb.CoinStatusResponse{}
		for _, c := range st {
			info := &pb.CoinInfo{CoinPub: c.Pub[:], State: c.State}
			if c.State != pb.CoinState_COIN_UNKNOWN {
				info.RequestId = c.RequestID[:]
			}
			out.Coins = append(out.Coins, info)
		}
		return respond(&pb.StorageResponse{Op: &pb.StorageResponse_CoinStatus{CoinStatus: out}})
	}
	return op, nil
}
