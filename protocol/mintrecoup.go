package protocol

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// Recoup: the holders of unspent coins of a revoked keyset get their value
// back by proving that the mint issued them (coin.RecoupProof); see
// SPEC.md §9, Recoup.

// MaxRecoupCoins bounds the coins of one Recoup: the spends of the
// envelope.
const MaxRecoupCoins = MaxSpends

// RecoupCoin is a coin of a revoked keyset whose holder asks for its value
// back ([MintRecouper.Recoup]).
type RecoupCoin struct {
	// Spend is the coin's spent-set record: its spend, verified by the
	// mint for its own peer ID and the recoup request's digest, in its
	// keyset's deposit window, with a keyring that accepts revoked
	// keysets.
	Spend SpendRecord
	// Key and Nonce name the issuance row the coin was issued from, and
	// ChallengeHash is the hash of the challenges the mint recomputed
	// from the coin and the blinding factors its holder revealed. The
	// stored row must hold the same hash: this is what proves that the
	// mint issued the coin, and not a thief of its key.
	Key, Nonce    [32]byte
	ChallengeHash [32]byte
}

// MintRecouper is a [MintStore] that can recoup coins of revoked keysets.
// A [MintService] whose store is not one answers Recoup with BAD_REQUEST.
type MintRecouper interface {
	// Recoup credits to funding account funding, atomically, each coin
	// that is not in the spent set and whose row (Key, Nonce) is stored
	// with the coin's keyset, amount and ChallengeHash and not recouped
	// before (DEPOSIT_CREDITED), adding it to the spent set and marking
	// the row recouped; a coin in the spent set with the same Server and
	// Digest is DEPOSIT_ALREADY_CREDITED, with another
	// DEPOSIT_DOUBLE_SPENT and its record; a coin without a matching row
	// DEPOSIT_INVALID. The account is opened with the credit if it does
	// not exist. It fails, changing nothing, if a coin's keyset is not
	// revoked in the store, or the coins are not all of the account's
	// unit ([ErrFundingUnit]).
	Recoup(ctx context.Context, coins []RecoupCoin, funding [32]byte) ([]DepositOutcome, error)
}

// errNotRevoked marks a Recoup input of a keyset that is not revoked.
var errNotRevoked = errors.New("protocol: keyset not revoked")

// revokedKeysets resolves only the revoked keysets of a keyring: the
// coins a Recoup takes.
type revokedKeysets struct{ k *MintKeyring }

func (r revokedKeysets) Lookup(id [32]byte) (*coin.Keyset, error) {
	e, err := r.k.entry(id)
	if err != nil {
		return nil, err
	}
	if !e.revoked {
		return nil, errNotRevoked
	}
	return e.secret.Keyset(), nil
}

func (m *MintService) recoup(ctx context.Context, remote peer.ID, op *pb.Recoup, req *pb.Request) (*pb.RecoupResponse, error) {
	store, ok := m.store.(MintRecouper)
	if !ok {
		return nil, mintBad("this mint does not recoup coins")
	}
	n := len(req.Spends)
	if n == 0 || n > MaxRecoupCoins {
		return nil, mintBad("%d coins, want 1 to %d", n, MaxRecoupCoins)
	}
	if len(op.Coins) != n {
		return nil, mintBad("%d proofs for %d coins", len(op.Coins), n)
	}
	if len(op.Funding) > MaxFundingSize {
		return nil, mintBad("funding proof over %d bytes", MaxFundingSize)
	}
	proofs := make([]coin.RecoupProof, n)
	for i, p := range op.Coins {
		var err error
		if proofs[i], err = parseRecoupProof(p); err != nil {
			return nil, err
		}
	}
	account, err := m.funding.Account(ctx, op.Funding)
	if err != nil {
		return nil, err
	}
	digest := RequestDigest(MintID, req.Body)
	digests := make([][DigestSize]byte, n)
	for i := range digests {
		digests[i] = digest
	}
	v := coin.Verifier{Keysets: revokedKeysets{m.keys}, Server: []byte(m.self), Window: coin.WindowDeposit, AnyDesignation: true}
	spends, errs := m.verifySpendsWith(remote, v, req.Spends, digests)
	seen := make(map[[32]byte]bool, n)
	for _, s := range spends {
		if s != nil {
			if seen[s.Pub] {
				return nil, mintBad("a coin is recouped twice in one call")
			}
			seen[s.Pub] = true
		}
	}
	results := make([]*pb.DepositResult, n)
	var coins []RecoupCoin
	var idx []int
	for i, s := range spends {
		if errs[i] != nil {
			results[i] = &pb.DepositResult{Status: mintDepositStatus(errs[i])}
			continue
		}
		sec, ok := m.keys.secret(s.KeysetID)
		if !ok {
			results[i] = &pb.DepositResult{Status: pb.DepositStatus_DEPOSIT_INVALID}
			continue
		}
		sg, err := sec.Signer(s.Amount)
		if err != nil {
			results[i] = &pb.DepositResult{Status: pb.DepositStatus_DEPOSIT_INVALID}
			continue
		}
		h, err := sg.RecoupHash(&s.Coin, &proofs[i])
		if err != nil {
			results[i] = &pb.DepositResult{Status: pb.DepositStatus_DEPOSIT_INVALID}
			continue
		}
		coins = append(coins, RecoupCoin{
			Spend: SpendRecord{
				Pub: s.Pub, KeysetID: s.KeysetID, Unit: sec.Keyset().Unit, Amount: s.Amount,
				Server: m.self, Digest: digest, Spend: append([]byte(nil), req.Spends[i]...),
			},
			Key: sg.Key(), Nonce: proofs[i].Nonce, ChallengeHash: h,
		})
		idx = append(idx, i)
	}
	if len(coins) > 0 {
		outs, err := store.Recoup(ctx, coins, account)
		if err != nil {
			return nil, err
		}
		if err := mintStoreOutcomes(results, idx, outs, true); err != nil {
			return nil, err
		}
	}
	return &pb.RecoupResponse{Results: results}, nil
}

func parseRecoupProof(p *pb.RecoupProof) (coin.RecoupProof, error) {
	var out coin.RecoupProof
	if p == nil {
		return out, mintBad("missing recoup proof")
	}
	fields := []struct {
		b   []byte
		dst *[32]byte
	}{{p.Nonce, &out.Nonce}, {p.Alpha0, &out.Alpha[0]}, {p.Beta0, &out.Beta[0]}, {p.Alpha1, &out.Alpha[1]}, {p.Beta1, &out.Beta[1]}}
	for _, f := range fields {
		if len(f.b) != 32 {
			return out, mintBad("recoup proof field is %d bytes, want 32", len(f.b))
		}
		*f.dst = [32]byte(f.b)
	}
	return out, nil
}

// RecoupBody returns the body of a Recoup request with request ID id:
// the coins' value goes to the funding account of the funding proof, and
// proofs[i] proves the issuance of the coin of the i-th spend. Sign the
// spends for the mint's peer ID and RequestDigest(MintID, body), then
// call [MintClient.Recoup]; retry with the same body and spends.
func RecoupBody(id [RequestIDSize]byte, funding []byte, proofs []coin.RecoupProof) ([]byte, error) {
	op := &pb.Recoup{Funding: append([]byte(nil), funding...), Coins: make([]*pb.RecoupProof, len(proofs))}
	for i := range proofs {
		p := &proofs[i]
		op.Coins[i] = &pb.RecoupProof{
			Nonce:  append([]byte(nil), p.Nonce[:]...),
			Alpha0: append([]byte(nil), p.Alpha[0][:]...),
			Beta0:  append([]byte(nil), p.Beta[0][:]...),
			Alpha1: append([]byte(nil), p.Alpha[1][:]...),
			Beta1:  append([]byte(nil), p.Beta[1][:]...),
		}
	}
	return proto.Marshal(&pb.MintRequest{RequestId: id[:], Op: &pb.MintRequest_Recoup{Recoup: op}})
}

// Recoup sends a Recoup request (see [RecoupBody]) with its spends and
// returns the mint's verdict on each coin, in order. Sending the same body
// and spends again is safe: each coin credited before is
// DEPOSIT_ALREADY_CREDITED, and credited once.
func (c *MintClient) Recoup(ctx context.Context, body []byte, spends []*coin.Spend) ([]DepositResult, error) {
	mr := new(pb.MintRequest)
	if err := proto.Unmarshal(body, mr); err != nil || mr.GetRecoup() == nil {
		return nil, fmt.Errorf("protocol: Recoup body is not a recoup request")
	}
	if len(spends) != len(mr.GetRecoup().Coins) {
		return nil, fmt.Errorf("protocol: %d spends for %d recoup proofs", len(spends), len(mr.GetRecoup().Coins))
	}
	raw := make([][]byte, len(spends))
	for i, s := range spends {
		raw[i] = s.Bytes()
	}
	resp, err := c.send(ctx, body, raw)
	if err != nil {
		return nil, err
	}
	r := resp.GetRecoup()
	if r == nil {
		return nil, mintMalformed("recoup results")
	}
	return parseMintDepositResults(r.Results, len(spends), "recoup")
}
