package wallet

import (
	"bytes"
	"errors"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// storedRecords returns every record a small real wallet has stored, by
// bucket.
func storedRecords(t testing.TB) map[string][][]byte {
	w, m, _ := newTest(t)
	m.withdraw(t, w, [32]byte{}, 1, 2, 4)
	m.withdraw(t, w, [32]byte{9}, 8)
	_, err := w.Reserve(ctx, []byte("server"), []byte("req"), [32]byte{3}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Settle(ctx, []byte("req"), false); err != nil {
		t.Fatal(err)
	}
	wds, err := w.NextWithdrawals(ctx, m.ks, []uint64{16, 32}, [32]byte{})
	if err != nil {
		t.Fatal(err)
	}
	m.answer(t, w, wds[0]) // one pending with commitments, one without
	out := map[string][][]byte{}
	err = w.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketCoins, bucketPending, bucketRequests} {
			err := tx.Bucket(name).ForEach(func(_, v []byte) error {
				out[string(name)] = append(out[string(name)], bytes.Clone(v))
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzRecords decodes arbitrary bytes as each kind of record: a record
// that decodes must re-encode to the same bytes, and a failure must be
// ErrCorrupt.
func FuzzRecords(f *testing.F) {
	recs := storedRecords(f)
	seeds := 0
	for kind, vs := range recs {
		for _, v := range vs {
			f.Add(kind[0], v)
			seeds++
		}
	}
	if seeds == 0 || len(recs) != 3 {
		f.Fatal("no seeds")
	}
	f.Fuzz(func(t *testing.T, kind byte, b []byte) {
		var enc []byte
		var err error
		switch kind % 3 {
		case 0:
			var r *coinRecord
			if r, err = parseCoinRecord(b); err == nil {
				enc = r.bytes()
			}
		case 1:
			var r *pendingRecord
			if r, err = parsePendingRecord(b); err == nil {
				enc = r.bytes()
			}
		case 2:
			var r *requestRecord
			if r, err = parseRequestRecord(b); err == nil {
				enc = r.bytes()
			}
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error is not ErrCorrupt: %v", err)
			}
			return
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

// FuzzParsePhrase checks that a phrase that parses is the one Export
// would give, up to case, spaces and dashes.
func FuzzParsePhrase(f *testing.F) {
	w, _, _ := newTest(f)
	f.Add(w.Export())
	f.Add("scrip-seed-")
	f.Fuzz(func(t *testing.T, p string) {
		seed, err := parsePhrase(p)
		if err != nil {
			if !errors.Is(err, ErrPhrase) {
				t.Fatalf("error is not ErrPhrase: %v", err)
			}
			return
		}
		again, err := parsePhrase(formatPhrase(&seed))
		if err != nil || again != seed {
			t.Fatalf("canonical phrase does not round-trip")
		}
	})
}
