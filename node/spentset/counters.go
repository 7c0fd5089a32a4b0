package spentset

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	bolt "go.etcd.io/bbolt"
)

// Stats are the store's counters. They are kept in the transaction of
// every write, so they always equal the sums over the records
// ([Store.Check] verifies it).
type Stats struct {
	// Coins is the number of coins recorded and not pruned.
	Coins uint64
	// Requests is the number of requests recorded and not pruned.
	Requests uint64
	// Pending is the number of coins awaiting a deposit verdict.
	Pending uint64
	// PendingValue is the total amount of the pending coins.
	PendingValue uint64
	// PendingBearer is the total amount of the pending bearer
	// (undesignated) coins, the value another server could take first.
	PendingBearer uint64
	// CreditedValue is the total amount the mint credited (credited or
	// already credited), pruned coins included.
	CreditedValue uint64
	// LostValue is the total amount of coins the mint refused (double
	// spent, invalid, expired, revoked) and of coins pruned while still
	// pending.
	LostValue uint64
}

var counterKeys = [...][]byte{
	[]byte("coins"), []byte("requests"), []byte("pending"), []byte("pending-value"),
	[]byte("pending-bearer"), []byte("credited-value"), []byte("lost-value"),
}

func (s *Stats) fields() [len(counterKeys)]*uint64 {
	return [...]*uint64{&s.Coins, &s.Requests, &s.Pending, &s.PendingValue,
		&s.PendingBearer, &s.CreditedValue, &s.LostValue}
}

func loadStats(tx *bolt.Tx) (Stats, error) {
	var s Stats
	b := tx.Bucket(bucketMeta)
	for i, p := range s.fields() {
		v := b.Get(counterKeys[i])
		switch len(v) {
		case 0:
		case 8:
			*p = binary.BigEndian.Uint64(v)
		default:
			return s, fmt.Errorf("%w: counter %s", ErrCorrupt, counterKeys[i])
		}
	}
	return s, nil
}

// store writes the counters that differ from old.
func (s *Stats) store(tx *bolt.Tx, old Stats) error {
	b := tx.Bucket(bucketMeta)
	of := old.fields()
	for i, p := range s.fields() {
		if *p == *of[i] {
			continue
		}
		if err := b.Put(counterKeys[i], binary.BigEndian.AppendUint64(nil, *p)); err != nil {
			return err
		}
	}
	return nil
}

// add returns a + b, and false if it overflows.
func add(a, b uint64) (uint64, bool) {
	s, carry := bits.Add64(a, b, 0)
	return s, carry == 0
}
