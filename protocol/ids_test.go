package protocol

import (
	"bytes"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// TestCapsFitLargestMessages builds the largest legitimate message of each
// kind, with every number at its widest, and checks that it fits its cap.
func TestCapsFitLargestMessages(t *testing.T) {
	big := uint64(math.MaxUint64)
	id := bytes.Repeat([]byte{1}, 42) // longer than any peer ID in use
	spends := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = make([]byte, coin.SpendSize)
		}
		return out
	}
	envelope := func(body proto.Message, n int) *pb.Request {
		return &pb.Request{Body: mustMarshal(t, body), Spends: spends(n)}
	}
	reply := func(body proto.Message) *pb.Response {
		return &pb.Response{Body: mustMarshal(t, body)}
	}
	write := envelope(&pb.StorageRequest{
		RequestId:  make([]byte, RequestIDSize),
		ScheduleId: make([]byte, ScheduleIDSize),
		Op: &pb.StorageRequest_Write{Write: &pb.Write{
			StorageIndex: make([]byte, StorageIndexSize), ShareNumber: math.MaxUint32, Offset: big,
			Data: make([]byte, MaxWriteSize)}},
	}, MaxSpends)
	read := reply(&pb.StorageResponse{Op: &pb.StorageResponse_Read{Read: &pb.ReadResponse{Data: make([]byte, MaxReadSize)}}})
	var deposit pb.Deposit
	var results pb.DepositResponse
	for range MaxDepositCoins {
		sc := &pb.SpentCoin{Spend: make([]byte, coin.SpendSize), RequestDigest: make([]byte, DigestSize)}
		deposit.Coins = append(deposit.Coins, sc)
		results.Results = append(results.Results, &pb.DepositResult{
			Status: pb.DepositStatus_DEPOSIT_DOUBLE_SPENT, Conflict: &pb.DoubleSpend{Server: id, Coin: sc}})
	}
	depositReq := envelope(&pb.MintRequest{RequestId: make([]byte, RequestIDSize), Op: &pb.MintRequest_Deposit{Deposit: &deposit}}, 0)
	depositResp := reply(&pb.MintResponse{Op: &pb.MintResponse_Deposit{Deposit: &results}})
	var swap pb.Swap
	for range MaxIssueCoins {
		swap.Coins = append(swap.Coins, &pb.BlindChallenge{Amount: big, Nonce: make([]byte, 32), C0: make([]byte, 32), C1: make([]byte, 32)})
	}
	swap.KeysetId = make([]byte, 32)
	swapReq := envelope(&pb.MintRequest{RequestId: make([]byte, RequestIDSize), Op: &pb.MintRequest_Swap{Swap: &swap}}, MaxSpends)

	tests := []struct {
		name string
		m    proto.Message
		cap  int
	}{
		{"Write with MaxSpends", write, MaxStorageRequestSize},
		{"Read answer", read, MaxStorageResponseSize},
		{"Deposit", depositReq, MaxMintRequestSize},
		{"Deposit answer, all double spent", depositResp, MaxMintResponseSize},
		{"Swap with MaxSpends", swapReq, MaxMintRequestSize},
	}
	for _, tt := range tests {
		if n := proto.Size(tt.m); n > tt.cap {
			t.Errorf("%s: %d bytes, cap %d", tt.name, n, tt.cap)
		} else {
			t.Logf("%s: %d bytes, cap %d", tt.name, n, tt.cap)
		}
	}
	for _, id := range []string{StorageID, MintID} {
		if _, ok := CapsFor(id); !ok {
			t.Errorf("no caps for %s", id)
		}
	}
}
