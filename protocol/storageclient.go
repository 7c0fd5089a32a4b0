package protocol

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/protocol/pb"
)

// StorageClient calls the storage protocol of scrip servers: one method per
// operation, each taking the operation's message (its request ID and
// schedule ID are filled in) and returning the typed answer. Paid
// operations are paid through the [PaidClient]. It is safe for concurrent
// use.
type StorageClient struct {
	c *PaidClient
}

// NewStorageClient returns a storage client over c.
func NewStorageClient(c *PaidClient) *StorageClient {
	return &StorageClient{c: c}
}

// Paid returns the client's [PaidClient].
func (s *StorageClient) Paid() *PaidClient { return s.c }

// do sends one storage operation to server and returns the answer's
// operation. held is the client's idea of the size of the shares server
// holds (AddLease only).
func (s *StorageClient) do(ctx context.Context, server peer.ID, op *pb.StorageRequest, held uint64) (*pb.StorageResponse, error) {
	usage, paid, err := StorageUsage(op, held)
	if err != nil {
		return nil, err
	}
	body, err := s.c.Do(ctx, server, PaidRequest{
		Protocol: StorageID,
		Paid:     paid,
		Usage:    usage,
		Body: func(requestID, scheduleID []byte) ([]byte, error) {
			op.RequestId, op.ScheduleId = requestID, scheduleID
			return proto.MarshalOptions{Deterministic: true}.Marshal(op)
		},
	})
	if err != nil {
		return nil, err
	}
	out := new(pb.StorageResponse)
	if err := proto.Unmarshal(body, out); err != nil {
		return nil, fmt.Errorf("%w: storage response: %w", ErrMalformed, err)
	}
	return out, nil
}

func wrongAnswer(want string) error {
	return fmt.Errorf("%w: the answer is not a %s answer", ErrMalformed, want)
}

// Version asks what server supports. Free.
func (s *StorageClient) Version(ctx context.Context, server peer.ID) (*pb.VersionResponse, error) {
	out, err := s.do(ctx, server, &pb.StorageRequest{Op: &pb.StorageRequest_Version{Version: &pb.Version{}}}, 0)
	if err != nil {
		return nil, err
	}
	if out.GetVersion() == nil {
		return nil, wrongAnswer("Version")
	}
	return out.GetVersion(), nil
}

// Prices asks for server's current schedule, verifies it as signed by
// server and caches it in the [PaidClient]. Free.
func (s *StorageClient) Prices(ctx context.Context, server peer.ID) (*SignedSchedule, error) {
	out, err := s.do(ctx, server, &pb.StorageRequest{Op: &pb.StorageRequest_Prices{Prices: &pb.Prices{}}}, 0)
	if err != nil {
		return nil, err
	}
	p := out.GetPrices()
	if p == nil {
		return nil, wrongAnswer("Prices")
	}
	sched, err := VerifySchedule(p.Schedule, server)
	if err != nil {
		return nil, err
	}
	s.c.SetSchedule(sched)
	return sched, nil
}

// Allocate reserves shares on server, or extends the leases of those it
// holds. Paid.
func (s *StorageClient) Allocate(ctx context.Context, server peer.ID, a *pb.Allocate) (*pb.AllocateResponse, error) {
	out, err := s.do(ctx, server, &pb.StorageRequest{Op: &pb.StorageRequest_Allocate{Allocate: a}}, 0)
	if err != nil {
		return nil, err
	}
	if out.GetAllocate() == nil {
		return nil, wrongAnswer("Allocate")
	}
	return out.GetAllocate(), nil
}

// Write writes data into a share this client allocated. Free: covered by
// the allocation.
func (s *StorageClient) Write(ctx context.Context, server peer.ID, w *pb.Write) error {
	out, err := s.do(ctx, server, &pb.StorageRequest{Op: &pb.StorageRequest_Write{Write: w}}, 0)
	if err == nil && out.GetWrite() == nil {
		err = wrongAnswer("Write")
	}
	return err
}

// Close closes a share this client allocated. Free: covered by the
// allocation.
func (s *StorageClient) Close(ctx context.Context, server peer.ID, c *pb.Close) error {
	out, err := s.do(ctx, server, &pb.StorageRequest{Op: &pb.StorageRequest_Close{Close: c}}, 0)
	if err == nil && out.GetClose() == nil {
		err = wrongAnswer("Close")
	}
	return err
}

// List asks which shares of a storage index server holds. Paid.
func (s *StorageClient) List(ctx context.Context, server peer.ID, l *pb.List) ([]*pb.Share, error) {
	out, err := s.do(ctx, server, &pb.StorageRequest{Op: &pb.StorageRequest_List{List: l}}, 0)
	if err != nil {
		return nil, err
	}
	if out.GetList() == nil {
		return nil, wrongAnswer("List")
	}
	return out.GetList().Shares, nil
}

// Read reads from a closed share. Paid.
func (s *StorageClient) Read(ctx context.Context, server peer.ID, r *pb.Read) ([]byte, error) {
	out, err := s.do(ctx, server, &pb.StorageRequest{Op: &pb.StorageRequest_Read{Read: r}}, 0)
	if err != nil {
		return nil, err
	}
	if out.GetRead() == nil {
		return nil, wrongAnswer("Read")
	}
	return out.GetRead().Data, nil
}

// AddLease extends the leases of all shares of a storage index that server
// holds, and returns the new lease end in unix seconds. Paid: held is the
// total size of those shares as the client knows it, which prices the
// call up front; if the server counts otherwise, its offer goes to the
// payment policy.
func (s *StorageClient) AddLease(ctx context.Context, server peer.ID, a *pb.AddLease, held uint64) (uint64, error) {
	out, err := s.do(ctx, server, &pb.StorageRequest{Op: &pb.StorageRequest_AddLease{AddLease: a}}, held)
	if err != nil {
		return 0, err
	}
	if out.GetAddLease() == nil {
		return 0, wrongAnswer("AddLease")
	}
	return out.GetAddLease().LeaseExpires, nil
}

// AdviseCorrupt tells server that a share looks corrupt. Free.
func (s *StorageClient) AdviseCorrupt(ctx context.Context, server peer.ID, a *pb.AdviseCorrupt) error {
	out, err := s.do(ctx, server, &pb.StorageRequest{Op: &pb.StorageRequest_AdviseCorrupt{AdviseCorrupt: a}}, 0)
	if err == nil && out.GetAdviseCorrupt() == nil {
		err = wrongAnswer("AdviseCorrupt")
	}
	return err
}

// CoinStatus asks what server knows of some coins. Free, and only
// informational: a server's word never releases a coin.
func (s *StorageClient) CoinStatus(ctx context.Context, server peer.ID, pubs [][32]byte) ([]*pb.CoinInfo, error) {
	c := &pb.CoinStatus{}
	for _, p := range pubs {
		c.CoinPubs = append(c.CoinPubs, p[:])
	}
	out, err := s.do(ctx, server, &pb.StorageRequest{Op: &pb.StorageRequest_CoinStatus{CoinStatus: c}}, 0)
	if err != nil {
		return nil, err
	}
	cs := out.GetCoinStatus()
	if cs == nil || len(cs.Coins) != len(pubs) {
		return nil, wrongAnswer("CoinStatus")
	}
	return cs.Coins, nil
}
