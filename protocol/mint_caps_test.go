package protocol_test

import (
	"bytes"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// TestMintCapsFit builds the largest request and answer each mint call
// allows under the limits of mint.go, every number at its widest, and
// checks that they fit the mint protocol's caps.
func TestMintCapsFit(t *testing.T) {
	big := uint64(math.MaxUint64)
	b32 := func() []byte { return bytes.Repeat([]byte{0xff}, 32) }
	server := bytes.Repeat([]byte{1}, coin.MaxServerIDLen) // the longest peer ID the mint credits
	unit := string(bytes.Repeat([]byte{'u'}, coin.MaxUnitLen))
	spends := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = make([]byte, coin.SpendSize)
		}
		return out
	}
	request := func(op *pb.MintRequest, nSpends int) proto.Message {
		op.RequestId = make([]byte, protocol.RequestIDSize)
		b, err := proto.Marshal(op)
		if err != nil {
			t.Fatal(err)
		}
		return &pb.Request{Body: b, Spends: spends(nSpends)}
	}
	response := func(op *pb.MintResponse) proto.Message {
		b, err := proto.Marshal(op)
		if err != nil {
			t.Fatal(err)
		}
		return &pb.Response{Body: b}
	}
	challenges := func(n int) []*pb.BlindChallenge {
		out := make([]*pb.BlindChallenge, n)
		for i := range out {
			out[i] = &pb.BlindChallenge{Amount: big, Nonce: b32(), C0: b32(), C1: b32()}
		}
		return out
	}
	answers := func(n int) []*pb.BlindAnswer {
		out := make([]*pb.BlindAnswer, n)
		for i := range out {
			out[i] = &pb.BlindAnswer{B: 1, S: b32()}
		}
		return out
	}
	evidence := func(n int) []*pb.DepositResult {
		out := make([]*pb.DepositResult, n)
		for i := range out {
			out[i] = &pb.DepositResult{Status: pb.DepositStatus_DEPOSIT_DOUBLE_SPENT, Conflict: &pb.DoubleSpend{
				Server: server, Coin: &pb.SpentCoin{Spend: make([]byte, coin.SpendSize), RequestDigest: b32()}}}
		}
		return out
	}

	var keysets pb.KeysetsResponse
	for range protocol.MaxPublishedKeysets {
		keysets.Keysets = append(keysets.Keysets, make([]byte, coin.MaxKeysetSize))
		keysets.Revoked = append(keysets.Revoked, b32())
	}
	var begin pb.WithdrawBegin
	var commitments pb.WithdrawBeginResponse
	for range protocol.MaxWithdrawCoins {
		begin.Coins = append(begin.Coins, &pb.CoinNonce{Amount: big, Nonce: b32()})
		commitments.Coins = append(commitments.Coins, &pb.Commitments{R0: b32(), R1: b32()})
	}
	begin.KeysetId = b32()
	var deposit pb.Deposit
	for range protocol.MaxDepositBatch {
		deposit.Coins = append(deposit.Coins, &pb.SpentCoin{Spend: make([]byte, coin.SpendSize), RequestDigest: b32()})
	}
	var restore pb.Restore
	for range protocol.MaxRestoreNonces {
		restore.Nonces = append(restore.Nonces, b32())
	}
	var restored pb.RestoreResponse
	for range protocol.MaxRestoreRows {
		restored.Coins = append(restored.Coins, &pb.RestoredCoin{Nonce: b32(), KeysetId: b32(), Amount: big,
			R0: b32(), R1: b32(), ChallengeHash: b32(), Answer: &pb.BlindAnswer{B: 1, S: b32()}})
	}
	var recoup pb.Recoup
	recoup.Funding = make([]byte, protocol.MaxFundingSize)
	for range protocol.MaxRecoupCoins {
		recoup.Coins = append(recoup.Coins, &pb.RecoupProof{Nonce: b32(), Alpha0: b32(), Beta0: b32(), Alpha1: b32(), Beta1: b32()})
	}
	var balances pb.BalanceResponse
	for range protocol.MaxPublishedKeysets {
		balances.Balances = append(balances.Balances, &pb.UnitAmount{Unit: unit, Amount: big})
	}

	tests := []struct {
		name string
		m    proto.Message
		cap  int
	}{
		{"Keysets answer", response(&pb.MintResponse{Op: &pb.MintResponse_Keysets{Keysets: &keysets}}), protocol.MaxMintResponseSize},
		{"WithdrawBegin", request(&pb.MintRequest{Op: &pb.MintRequest_WithdrawBegin{WithdrawBegin: &begin}}, 0), protocol.MaxMintRequestSize},
		{"WithdrawBegin answer", response(&pb.MintResponse{Op: &pb.MintResponse_WithdrawBegin{WithdrawBegin: &commitments}}), protocol.MaxMintResponseSize},
		{"WithdrawFinish", request(&pb.MintRequest{Op: &pb.MintRequest_WithdrawFinish{WithdrawFinish: &pb.WithdrawFinish{
			KeysetId: b32(), Funding: make([]byte, protocol.MaxFundingSize), Coins: challenges(protocol.MaxWithdrawCoins)}}}, 0), protocol.MaxMintRequestSize},
		{"WithdrawFinish answer", response(&pb.MintResponse{Op: &pb.MintResponse_WithdrawFinish{WithdrawFinish: &pb.WithdrawFinishResponse{
			Coins: answers(protocol.MaxWithdrawCoins)}}}), protocol.MaxMintResponseSize},
		{"Swap", request(&pb.MintRequest{Op: &pb.MintRequest_Swap{Swap: &pb.Swap{
			KeysetId: b32(), Coins: challenges(protocol.MaxSwapOutputs)}}}, protocol.MaxSwapInputs), protocol.MaxMintRequestSize},
		{"Swap answer, all inputs double spent", response(&pb.MintResponse{Op: &pb.MintResponse_Swap{Swap: &pb.SwapResponse{
			Coins: answers(protocol.MaxSwapOutputs), Inputs: evidence(protocol.MaxSwapInputs)}}}), protocol.MaxMintResponseSize},
		{"Deposit", request(&pb.MintRequest{Op: &pb.MintRequest_Deposit{Deposit: &deposit}}, 0), protocol.MaxMintRequestSize},
		{"Deposit answer, all double spent", response(&pb.MintResponse{Op: &pb.MintResponse_Deposit{Deposit: &pb.DepositResponse{
			Results: evidence(protocol.MaxDepositBatch)}}}), protocol.MaxMintResponseSize},
		{"Balance answer", response(&pb.MintResponse{Op: &pb.MintResponse_Balance{Balance: &balances}}), protocol.MaxMintResponseSize},
		{"Payout", request(&pb.MintRequest{Op: &pb.MintRequest_Payout{Payout: &pb.Payout{
			Amount: &pb.UnitAmount{Unit: unit, Amount: big}, Destination: make([]byte, protocol.MaxPayoutDestination)}}}, 0), protocol.MaxMintRequestSize},
		{"Payout answer", response(&pb.MintResponse{Op: &pb.MintResponse_Payout{Payout: &pb.PayoutResponse{
			Receipt: make([]byte, protocol.MaxPayoutReceipt), Remaining: big}}}), protocol.MaxMintResponseSize},
		{"Restore", request(&pb.MintRequest{Op: &pb.MintRequest_Restore{Restore: &restore}}, 0), protocol.MaxMintRequestSize},
		{"Recoup", request(&pb.MintRequest{Op: &pb.MintRequest_Recoup{Recoup: &recoup}}, protocol.MaxRecoupCoins), protocol.MaxMintRequestSize},
		{"Recoup answer, all double spent", response(&pb.MintResponse{Op: &pb.MintResponse_Recoup{Recoup: &pb.RecoupResponse{
			Results: evidence(protocol.MaxRecoupCoins)}}}), protocol.MaxMintResponseSize},
		{"Restore answer", response(&pb.MintResponse{Op: &pb.MintResponse_Restore{Restore: &restored}}), protocol.MaxMintResponseSize},
	}
	for _, tt := range tests {
		if n := proto.Size(tt.m); n > tt.cap {
			t.Errorf("%s: %d bytes, cap %d", tt.name, n, tt.cap)
		} else {
			t.Logf("%s: %d bytes, cap %d", tt.name, n, tt.cap)
		}
	}
	if protocol.MaxSwapInputs > protocol.MaxSpends {
		t.Errorf("a swap takes more inputs than an envelope carries")
	}
}
