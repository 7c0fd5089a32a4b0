package mintstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

	bolt "go.etcd.io/bbolt"
)

// AuditEntry is what the store counted for one denomination key over its
// whole life: coins issued (rows inserted) and coins spent (entries added
// to the spent set), by how. Pruning lowers none of the counts.
type AuditEntry struct {
	// KeysetID and Amount name the denomination key; Key is the key
	// itself, or zero if the store no longer holds its keyset.
	KeysetID [32]byte
	Amount   uint64
	Key      [32]byte

	// Withdrawn and SwapOut count the rows inserted by CommitIssue and
	// as the outputs of CommitSwap.
	Withdrawn, SwapOut uint64
	// Deposited, SwapIn and Recouped count the coins credited to
	// servers, taken as Swap inputs and recouped.
	Deposited, SwapIn, Recouped uint64
	// PrunedRows and PrunedSpent count the rows and spent entries that
	// Prune deleted.
	PrunedRows, PrunedSpent uint64

	// Overspent is set when more coins were spent than issued: someone
	// else signed coins with the key. It is how a leaked key shows.
	Overspent bool
}

// Issued returns the number of coins issued under the key.
func (e AuditEntry) Issued() uint64 { return satAdd(e.Withdrawn, e.SwapOut) }

// Spent returns the number of coins of the key spent at the mint.
func (e AuditEntry) Spent() uint64 { return satAdd(satAdd(e.Deposited, e.SwapIn), e.Recouped) }

// IssuedValue returns the value issued, Issued × Amount, or the largest
// uint64 if that overflows.
func (e AuditEntry) IssuedValue() uint64 { return satMul(e.Issued(), e.Amount) }

// SpentValue returns the value spent, Spent × Amount, or the largest
// uint64 if that overflows.
func (e AuditEntry) SpentValue() uint64 { return satMul(e.Spent(), e.Amount) }

func satAdd(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	if c != 0 {
		return math.MaxUint64
	}
	return s
}

func satMul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}

// Audit returns, per denomination key the store has seen a coin of, the
// coins issued and spent, sorted by keyset ID and then amount, and flags
// the keys under which more was spent than issued.
//
// An honest mint issues each coin from one row and spends it at most
// once, so spent never exceeds issued. Coins signed with a stolen key have
// no row: they show once the thief has spent more of them than honest
// holders have left unspent, which by the end of the keyset's deposit
// window is every coin forged and spent. Audit reads counters, not the
// records, so it costs one pass over the keys and stays right after
// pruning.
func (s *Store) Audit(ctx context.Context) ([]AuditEntry, error) {
	var out []AuditEntry
	err := s.view(ctx, func(tx *bolt.Tx) error {
		kb := tx.Bucket(bucketKeysets)
		keysets := make(map[[32]byte]keysetRecord)
		return tx.Bucket(bucketTally).ForEach(func(k, v []byte) error {
			if len(k) != 40 {
				return fmt.Errorf("%w: tally key", ErrCorrupt)
			}
			t, err := decodeTally(v)
			if err != nil {
				return err
			}
			e := AuditEntry{
				KeysetID: [32]byte(k[:32]), Amount: binary.BigEndian.Uint64(k[32:]),
				Withdrawn: t.Withdrawn, SwapOut: t.SwapOut,
				Deposited: t.Deposited, SwapIn: t.SwapIn, Recouped: t.Recouped,
				PrunedRows: t.PrunedRows, PrunedSpent: t.PrunedSpent,
			}
			rec, ok := keysets[e.KeysetID]
			if !ok {
				if v := kb.Get(e.KeysetID[:]); v != nil {
					if rec, err = decodeKeyset(e.KeysetID[:], v); err != nil {
						return err
					}
				}
				keysets[e.KeysetID] = rec
			}
			e.Key = rec.keys[e.Amount]
			e.Overspent = e.Spent() > e.Issued()
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
