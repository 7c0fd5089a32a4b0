package mintstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/protocol"
)

// Balance implements [protocol.MintStore].
func (s *Store) Balance(ctx context.Context, server peer.ID) ([]protocol.UnitAmount, error) {
	var out []protocol.UnitAmount
	err := s.view(ctx, func(tx *bolt.Tx) error {
		prefix := serverPrefix(server)
		c := tx.Bucket(bucketBalances).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(v) != 8 {
				return fmt.Errorf("%w: balance", ErrCorrupt)
			}
			out = append(out, protocol.UnitAmount{Unit: string(k[len(prefix):]), Amount: binary.BigEndian.Uint64(v)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func putPayout(tx *bolt.Tx, k []byte, rec *protocol.PayoutRecord) error {
	v, err := encodePayout(rec)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketPayouts).Put(k, v); err != nil {
		return err
	}
	if rec.State == protocol.PayoutPending {
		return tx.Bucket(bucketPending).Put(bytes.Clone(k), []byte{})
	}
	return tx.Bucket(bucketPending).Delete(k)
}

// BeginPayout implements [protocol.MintStore].
func (s *Store) BeginPayout(ctx context.Context, o protocol.PayoutOrder) (protocol.PayoutRecord, error) {
	var out protocol.PayoutRecord
	err := s.update(ctx, func(tx *bolt.Tx) error {
		k := payoutKey(o.Server, o.RequestID)
		if v := tx.Bucket(bucketPayouts).Get(k); v != nil {
			rec, err := decodePayout(k, v)
			if err != nil {
				return err
			}
			if rec.Digest != o.Digest {
				return protocol.ErrMintRequestReused
			}
			out = rec
			return errNoWrite
		}
		bb := tx.Bucket(bucketBalances)
		bk := balanceKey(o.Server, o.Unit)
		var bal uint64
		if v := bb.Get(bk); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("%w: balance", ErrCorrupt)
			}
			bal = binary.BigEndian.Uint64(v)
		}
		if bal < o.Amount {
			return protocol.ErrInsufficientBalance
		}
		if o.Amount > 0 {
			if err := bb.Put(bk, binary.BigEndian.AppendUint64(nil, bal-o.Amount)); err != nil {
				return err
			}
		}
		o.Destination = cloneOrNil(o.Destination)
		rec := protocol.PayoutRecord{PayoutOrder: o, State: protocol.PayoutPending}
		if err := putPayout(tx, k, &rec); err != nil {
			return err
		}
		out = rec
		return nil
	})
	if err != nil {
		return protocol.PayoutRecord{}, err
	}
	return out, nil
}

// FinishPayout implements [protocol.MintStore].
func (s *Store) FinishPayout(ctx context.Context, server peer.ID, requestID [protocol.RequestIDSize]byte, receipt []byte, refused bool) (protocol.PayoutRecord, error) {
	var out protocol.PayoutRecord
	err := s.update(ctx, func(tx *bolt.Tx) error {
		k := payoutKey(server, requestID)
		v := tx.Bucket(bucketPayouts).Get(k)
		if v == nil {
			return fmt.Errorf("%w: no such payout", protocol.ErrNotFound)
		}
		rec, err := decodePayout(k, v)
		if err != nil {
			return err
		}
		if rec.State != protocol.PayoutPending {
			out = rec
			return errNoWrite
		}
		if refused {
			if err := addBalance(tx.Bucket(bucketBalances), server, rec.Unit, rec.Amount); err != nil {
				return err
			}
			rec.State = protocol.PayoutRefused
		} else {
			rec.State = protocol.PayoutPaid
			rec.Receipt = cloneOrNil(receipt)
		}
		if err := putPayout(tx, k, &rec); err != nil {
			return err
		}
		out = rec
		return nil
	})
	if err != nil {
		return protocol.PayoutRecord{}, err
	}
	return out, nil
}

// PendingPayouts implements [protocol.MintStore]. Payouts come sorted by
// server and request ID.
func (s *Store) PendingPayouts(ctx context.Context) ([]protocol.PayoutRecord, error) {
	var out []protocol.PayoutRecord
	err := s.view(ctx, func(tx *bolt.Tx) error {
		pb := tx.Bucket(bucketPayouts)
		return tx.Bucket(bucketPending).ForEach(func(k, _ []byte) error {
			v := pb.Get(k)
			if v == nil {
				return fmt.Errorf("%w: pending index names a missing payout", ErrCorrupt)
			}
			rec, err := decodePayout(k, v)
			if err != nil {
				return err
			}
			out = append(out, rec)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
