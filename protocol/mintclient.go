package protocol

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// MintClient calls one mint's service, [MintID], from a libp2p host. Each
// method is one call on a new stream, with the deadline of its context (see
// [Call]); an error answer is an *[Error] matching its code's sentinel. It
// is safe for concurrent use.
type MintClient struct {
	host     host.Host
	mint     peer.ID
	identity ed25519.PublicKey
}

// NewMintClient returns a client of the mint with peer ID mint, whose
// identity key signs its keysets, calling from h.
func NewMintClient(h host.Host, mint peer.ID, identity ed25519.PublicKey) *MintClient {
	return &MintClient{host: h, mint: mint, identity: append(ed25519.PublicKey(nil), identity...)}
}

// Mint returns the mint's peer ID, for which Swap inputs are spent.
func (c *MintClient) Mint() peer.ID { return c.mint }

func newMintRequestID() []byte {
	id := make([]byte, RequestIDSize)
	rand.Read(id)
	return id
}

func mintBody(mr *pb.MintRequest) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(mr)
}

// call sends mr, with a fresh request ID if it has none, and returns the
// mint's response.
func (c *MintClient) call(ctx context.Context, mr *pb.MintRequest) (*pb.MintResponse, error) {
	if len(mr.RequestId) == 0 {
		mr.RequestId = newMintRequestID()
	}
	body, err := mintBody(mr)
	if err != nil {
		return nil, fmt.Errorf("protocol: encoding mint request: %w", err)
	}
	return c.send(ctx, body, nil)
}

func (c *MintClient) send(ctx context.Context, body []byte, spends [][]byte) (*pb.MintResponse, error) {
	resp, err := Call(ctx, c.host, c.mint, MintID, &pb.Request{Body: body, Spends: spends})
	if err != nil {
		return nil, err
	}
	out := new(pb.MintResponse)
	if err := proto.Unmarshal(resp.Body, out); err != nil {
		return nil, fmt.Errorf("%w: mint response: %w", ErrMalformed, err)
	}
	return out, nil
}

func mintMalformed(format string, args ...any) error {
	return fmt.Errorf("%w: mint response: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Keysets returns the mint's published keysets with their status. Each is
// checked as signed by the mint's identity key; a keyset that is not fails
// the call.
func (c *MintClient) Keysets(ctx context.Context) ([]PublishedKeyset, error) {
	resp, err := c.call(ctx, &pb.MintRequest{Op: &pb.MintRequest_Keysets{Keysets: &pb.Keysets{}}})
	if err != nil {
		return nil, err
	}
	r := resp.GetKeysets()
	if r == nil || len(r.Keysets) > MaxPublishedKeysets {
		return nil, mintMalformed("keysets")
	}
	revoked := make(map[[32]byte]bool, len(r.Revoked))
	for _, id := range r.Revoked {
		if len(id) != 32 {
			return nil, mintMalformed("revoked keyset ID")
		}
		revoked[[32]byte(id)] = true
	}
	out := make([]PublishedKeyset, 0, len(r.Keysets))
	for i, b := range r.Keysets {
		ks, err := coin.ParseKeyset(b, c.identity)
		if err != nil {
			return nil, fmt.Errorf("protocol: mint keyset %d: %w", i, err)
		}
		out = append(out, PublishedKeyset{Keyset: ks, Revoked: revoked[ks.ID()]})
	}
	return out, nil
}

// WithdrawBegin asks for the commitments of coins of keyset keysetID, in
// order. It is free and stateless: asking again gives the same answer.
func (c *MintClient) WithdrawBegin(ctx context.Context, keysetID [32]byte, coins []WithdrawCoin) ([]Commitments, error) {
	op := &pb.WithdrawBegin{KeysetId: keysetID[:], Coins: make([]*pb.CoinNonce, len(coins))}
	for i, wc := range coins {
		op.Coins[i] = &pb.CoinNonce{Amount: wc.Amount, Nonce: append([]byte(nil), wc.Nonce[:]...)}
	}
	resp, err := c.call(ctx, &pb.MintRequest{Op: &pb.MintRequest_WithdrawBegin{WithdrawBegin: op}})
	if err != nil {
		return nil, err
	}
	r := resp.GetWithdrawBegin()
	if r == nil || len(r.Coins) != len(coins) {
		return nil, mintMalformed("commitments")
	}
	out := make([]Commitments, len(coins))
	for i, cm := range r.Coins {
		if len(cm.R0) != 32 || len(cm.R1) != 32 {
			return nil, mintMalformed("commitment %d", i)
		}
		out[i] = Commitments{R0: [32]byte(cm.R0), R1: [32]byte(cm.R1)}
	}
	return out, nil
}

func mintChallengesPB(coins []BlindChallenge) []*pb.BlindChallenge {
	out := make([]*pb.BlindChallenge, len(coins))
	for i, ch := range coins {
		out[i] = &pb.BlindChallenge{
			Amount: ch.Amount,
			Nonce:  append([]byte(nil), ch.Nonce[:]...),
			C0:     append([]byte(nil), ch.C0[:]...),
			C1:     append([]byte(nil), ch.C1[:]...),
		}
	}
	return out
}

func parseMintAnswers(as []*pb.BlindAnswer, n int) ([]coin.Answer, error) {
	if len(as) != n {
		return nil, mintMalformed("%d answers for %d coins", len(as), n)
	}
	out := make([]coin.Answer, n)
	for i, a := range as {
		if a == nil || a.B > 1 || len(a.S) != 32 {
			return nil, mintMalformed("answer %d", i)
		}
		out[i] = coin.Answer{B: uint8(a.B), S: [32]byte(a.S)}
	}
	return out, nil
}

// WithdrawFinish sends the second round for coins of keyset keysetID, paid
// by funding (for [VoucherFunding], a voucher code), and returns the
// mint's answers in order, for [coin.Withdrawal.Finish].
//
// The call may be retried with the same challenges, in any request: the
// mint answers from its stored rows and charges only coins it had not
// answered. A wallet must persist its challenges (or the commitments)
// before the first attempt, and never send other challenges for a nonce.
func (c *MintClient) WithdrawFinish(ctx context.Context, keysetID [32]byte, funding []byte, coins []BlindChallenge) ([]coin.Answer, error) {
	op := &pb.WithdrawFinish{KeysetId: keysetID[:], Funding: funding, Coins: mintChallengesPB(coins)}
	resp, err := c.call(ctx, &pb.MintRequest{Op: &pb.MintRequest_WithdrawFinish{WithdrawFinish: op}})
	if err != nil {
		return nil, err
	}
	r := resp.GetWithdrawFinish()
	if r == nil {
		return nil, mintMalformed("no answers")
	}
	return parseMintAnswers(r.Coins, len(coins))
}

// NewSwapBody returns the body of a Swap request: new coins of keyset
// keysetID for the challenges of outputs, under requestID (16 random
// bytes). The caller spends its input coins for the mint's peer ID and
// RequestDigest(MintID, body), and keeps the body to retry with exactly
// the same bytes.
func NewSwapBody(requestID [RequestIDSize]byte, keysetID [32]byte, outputs []BlindChallenge) ([]byte, error) {
	return mintBody(&pb.MintRequest{
		RequestId: requestID[:],
		Op:        &pb.MintRequest_Swap{Swap: &pb.Swap{KeysetId: keysetID[:], Coins: mintChallengesPB(outputs)}},
	})
}

// Swap sends a Swap: body from [NewSwapBody], paid by spends of coins of
// the same total, each made with [coin.NewSpend] for the mint's peer ID and
// RequestDigest(MintID, body). It returns the answers for the new coins, in
// order.
//
// If the mint refuses an input, nothing is spent and Swap returns a
// *[SwapRefusedError] with the verdict on each input (and, for a coin
// spent before, the evidence). Retrying with the same body and spends is
// answered with the same answers; the same request ID with anything else
// is refused.
func (c *MintClient) Swap(ctx context.Context, body []byte, spends []*coin.Spend) ([]coin.Answer, error) {
	mr := new(pb.MintRequest)
	if err := proto.Unmarshal(body, mr); err != nil || mr.GetSwap() == nil {
		return nil, fmt.Errorf("protocol: Swap body is not a swap request")
	}
	raw := make([][]byte, len(spends))
	for i, s := range spends {
		raw[i] = s.Bytes()
	}
	resp, err := c.send(ctx, body, raw)
	if err != nil {
		return nil, err
	}
	r := resp.GetSwap()
	if r == nil || len(r.Inputs) != len(spends) {
		return nil, mintMalformed("swap")
	}
	if len(r.Coins) == 0 {
		e := &SwapRefusedError{Inputs: make([]DepositResult, len(r.Inputs))}
		for i, in := range r.Inputs {
			if e.Inputs[i], err = parseMintDepositResult(in); err != nil {
				return nil, err
			}
		}
		return nil, e
	}
	return parseMintAnswers(r.Coins, len(mr.GetSwap().Coins))
}

// DepositResult is the mint's verdict on one coin: deposited, or spent as
// a Swap input.
type DepositResult struct {
	Status pb.DepositStatus
	// Conflict is set with DEPOSIT_DOUBLE_SPENT.
	Conflict *DoubleSpendEvidence
}

// DoubleSpendEvidence is the spend of a coin that the mint took first.
type DoubleSpendEvidence struct {
	// Server is the peer the spend was made for: the server it was
	// credited to, or the mint itself for a Swap input.
	Server peer.ID
	Spend  *coin.Spend
	Digest [DigestSize]byte
}

// Verify checks that the evidence is a spend of the coin with key pub
// signed for Server and Digest, valid under keysets at time now in the
// deposit window. A valid evidence proves that the coin's holder made that
// spend.
func (e *DoubleSpendEvidence) Verify(keysets coin.Keysets, pub [32]byte, now time.Time) error {
	if e.Spend == nil || e.Spend.Pub != pub {
		return fmt.Errorf("%w: evidence for another coin", ErrInvalidCoin)
	}
	v := coin.Verifier{Keysets: keysets, Server: []byte(e.Server), Window: coin.WindowDeposit}
	return v.VerifySpend(e.Spend, e.Digest, now)
}

func parseMintDepositResult(r *pb.DepositResult) (DepositResult, error) {
	if r == nil {
		return DepositResult{}, mintMalformed("no result")
	}
	out := DepositResult{Status: r.Status}
	if r.Status == pb.DepositStatus_DEPOSIT_DOUBLE_SPENT {
		ds := r.Conflict
		if ds == nil || ds.Coin == nil || len(ds.Coin.RequestDigest) != DigestSize {
			return DepositResult{}, mintMalformed("double spend without evidence")
		}
		server, err := peer.IDFromBytes(ds.Server)
		if err != nil {
			return DepositResult{}, mintMalformed("evidence server")
		}
		s, err := coin.ParseSpend(ds.Coin.Spend)
		if err != nil {
			return DepositResult{}, mintMalformed("evidence spend")
		}
		out.Conflict = &DoubleSpendEvidence{Server: server, Spend: s, Digest: [DigestSize]byte(ds.Coin.RequestDigest)}
	}
	return out, nil
}

// SwapRefusedError reports a Swap refused because of its inputs; nothing
// was spent. Inputs has the verdict on each input, in order:
// DEPOSIT_NOT_TAKEN for good coins, DEPOSIT_DOUBLE_SPENT with evidence, or
// DEPOSIT_INVALID, DEPOSIT_EXPIRED, DEPOSIT_REVOKED. errors.Is matches the
// sentinel of each refusal ([ErrDoubleSpend], [ErrInvalidCoin],
// [ErrExpiredKeyset], [ErrRevokedKeyset]).
type SwapRefusedError struct {
	Inputs []DepositResult
}

func mintDepositSentinel(s pb.DepositStatus) error {
	switch s {
	case pb.DepositStatus_DEPOSIT_DOUBLE_SPENT:
		return ErrDoubleSpend
	case pb.DepositStatus_DEPOSIT_EXPIRED:
		return ErrExpiredKeyset
	case pb.DepositStatus_DEPOSIT_REVOKED:
		return ErrRevokedKeyset
	case pb.DepositStatus_DEPOSIT_NOT_TAKEN:
		return nil
	}
	return ErrInvalidCoin
}

// Error lists the refused inputs.
func (e *SwapRefusedError) Error() string {
	var parts []string
	for i, in := range e.Inputs {
		if err := mintDepositSentinel(in.Status); err != nil {
			parts = append(parts, fmt.Sprintf("input %d: %v", i, err))
		}
	}
	return "protocol: swap refused: " + strings.Join(parts, "; ")
}

// Unwrap returns the sentinels of the refused inputs.
func (e *SwapRefusedError) Unwrap() []error {
	var out []error
	for _, in := range e.Inputs {
		if err := mintDepositSentinel(in.Status); err != nil {
			out = append(out, err)
		}
	}
	return out
}

// Deposit deposits coins received by this host's peer: each spend was
// made for this peer and the request digest given with it. It returns the
// mint's verdict on each coin, in order. Depositing again is safe: a coin
// already credited to this peer for the same request is
// DEPOSIT_ALREADY_CREDITED and credited once. A coin the mint did not
// look at, because spends before it failed verification, is
// DEPOSIT_NOT_TAKEN: no verdict; deposit it again.
func (c *MintClient) Deposit(ctx context.Context, items []coin.Item) ([]DepositResult, error) {
	op := &pb.Deposit{Coins: make([]*pb.SpentCoin, len(items))}
	for i, it := range items {
		op.Coins[i] = &pb.SpentCoin{Spend: it.Spend.Bytes(), RequestDigest: append([]byte(nil), it.Digest[:]...)}
	}
	resp, err := c.call(ctx, &pb.MintRequest{Op: &pb.MintRequest_Deposit{Deposit: op}})
	if err != nil {
		return nil, err
	}
	r := resp.GetDeposit()
	if r == nil {
		return nil, mintMalformed("deposit results")
	}
	return parseMintDepositResults(r.Results, len(items), "deposit")
}

// parseMintDepositResults parses the n verdicts of a Deposit or Recoup
// answer.
func parseMintDepositResults(rs []*pb.DepositResult, n int, what string) ([]DepositResult, error) {
	if len(rs) != n {
		return nil, mintMalformed("%s results", what)
	}
	out := make([]DepositResult, n)
	for i, res := range rs {
		var err error
		if out[i], err = parseMintDepositResult(res); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Balance returns this host's peer's balances at the mint, one per unit.
func (c *MintClient) Balance(ctx context.Context) ([]UnitAmount, error) {
	resp, err := c.call(ctx, &pb.MintRequest{Op: &pb.MintRequest_Balance{Balance: &pb.Balance{}}})
	if err != nil {
		return nil, err
	}
	r := resp.GetBalance()
	if r == nil {
		return nil, mintMalformed("balance")
	}
	out := make([]UnitAmount, len(r.Balances))
	for i, b := range r.Balances {
		out[i] = UnitAmount{Unit: b.Unit, Amount: b.Amount}
	}
	return out, nil
}

// PayoutResult is the answer to a payout.
type PayoutResult struct {
	// Receipt is the funding plugin's proof of payment (for
	// [VoucherFunding], a voucher code).
	Receipt []byte
	// Remaining is the balance left in the payout's unit when answered.
	Remaining uint64
}

// Payout has amount of this peer's balance paid out to destination
// (meaning depends on the mint's funding plugin). requestID (16 random
// bytes, persisted by the caller before the first attempt) makes it
// idempotent: a retry with the same request ID and arguments is paid once
// and gets the same receipt; the same ID with other arguments is refused.
func (c *MintClient) Payout(ctx context.Context, requestID [RequestIDSize]byte, amount UnitAmount, destination []byte) (*PayoutResult, error) {
	op := &pb.Payout{Amount: &pb.UnitAmount{Unit: amount.Unit, Amount: amount.Amount}, Destination: destination}
	resp, err := c.call(ctx, &pb.MintRequest{RequestId: requestID[:], Op: &pb.MintRequest_Payout{Payout: op}})
	if err != nil {
		return nil, err
	}
	r := resp.GetPayout()
	if r == nil {
		return nil, mintMalformed("payout")
	}
	return &PayoutResult{Receipt: r.Receipt, Remaining: r.Remaining}, nil
}

// RestoredRow is a stored issuance row with what a wallet needs to finish
// its coin again: call [coin.Withdrawal.Challenges] with the commitments,
// check [RestoredRow.Matches] on the challenges (it fails if the wallet
// guessed the designation wrong), then [coin.Withdrawal.Finish] with
// Answer.
type RestoredRow struct {
	KeysetID      [32]byte
	Amount        uint64
	Nonce         [32]byte
	Commitments   Commitments
	ChallengeHash [32]byte
	Answer        coin.Answer
}

// Matches reports whether the row answered the challenges c0, c1.
func (r *RestoredRow) Matches(c0, c1 [32]byte) bool {
	return mintHashEqual(coin.ChallengeHash(c0, c1), r.ChallengeHash)
}

// Restore returns the mint's stored rows for nonces (nonces it never
// answered are left out), at most [MaxRestoreRows]. The mint replays rows;
// it never computes an answer for Restore.
func (c *MintClient) Restore(ctx context.Context, nonces [][32]byte) ([]RestoredRow, error) {
	op := &pb.Restore{Nonces: make([][]byte, len(nonces))}
	for i, n := range nonces {
		op.Nonces[i] = append([]byte(nil), n[:]...)
	}
	resp, err := c.call(ctx, &pb.MintRequest{Op: &pb.MintRequest_Restore{Restore: op}})
	if err != nil {
		return nil, err
	}
	r := resp.GetRestore()
	if r == nil || len(r.Coins) > MaxRestoreRows {
		return nil, mintMalformed("restore")
	}
	out := make([]RestoredRow, len(r.Coins))
	for i, rc := range r.Coins {
		if len(rc.Nonce) != 32 || len(rc.KeysetId) != 32 || len(rc.R0) != 32 || len(rc.R1) != 32 || len(rc.ChallengeHash) != 32 {
			return nil, mintMalformed("restored row %d", i)
		}
		a, err := parseMintAnswers([]*pb.BlindAnswer{rc.Answer}, 1)
		if err != nil {
			return nil, err
		}
		out[i] = RestoredRow{
			KeysetID:      [32]byte(rc.KeysetId),
			Amount:        rc.Amount,
			Nonce:         [32]byte(rc.Nonce),
			Commitments:   Commitments{R0: [32]byte(rc.R0), R1: [32]byte(rc.R1)},
			ChallengeHash: [32]byte(rc.ChallengeHash),
			Answer:        a[0],
		}
	}
	return out, nil
}
