package protocol

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestQuote(t *testing.T) {
	const max = math.MaxUint64
	tests := []struct {
		name string
		r    Rates
		u    Usage
		want uint64
		err  error
	}{
		{"zero", Rates{}, Usage{}, 0, nil},
		{"per call only", Rates{PerCall: 5, StorePerGiBMonth: 100}, Usage{}, 5, nil},
		{"one GiB-month", Rates{StorePerGiBMonth: 1000}, Usage{StoreBytes: GiB, StoreSeconds: Month}, 1000, nil},
		{"one byte-second rounds up", Rates{StorePerGiBMonth: 1}, Usage{StoreBytes: 1, StoreSeconds: 1}, 1, nil},
		{"exact, no rounding", Rates{StorePerGiBMonth: 2}, Usage{StoreBytes: GiB / 2, StoreSeconds: Month}, 1, nil},
		{"just over", Rates{StorePerGiBMonth: 2}, Usage{StoreBytes: GiB/2 + 1, StoreSeconds: Month}, 2, nil},
		{"zero duration", Rates{StorePerGiBMonth: 1000}, Usage{StoreBytes: GiB, StoreSeconds: 0}, 0, nil},
		{"read GiB", Rates{ReadPerGiB: 7}, Usage{ReadBytes: GiB}, 7, nil},
		{"read one byte", Rates{ReadPerGiB: 7}, Usage{ReadBytes: 1}, 1, nil},
		{"write GiB+1", Rates{WritePerGiB: 3}, Usage{WriteBytes: GiB + 1}, 4, nil},
		{"terms round separately", Rates{PerCall: 1, StorePerGiBMonth: 1, ReadPerGiB: 1, WritePerGiB: 1},
			Usage{StoreBytes: 1, StoreSeconds: 1, ReadBytes: 1, WriteBytes: 1}, 4, nil},
		{"192-bit product fits", Rates{StorePerGiBMonth: max}, Usage{StoreBytes: GiB, StoreSeconds: Month}, max, nil},
		{"huge product divides down", Rates{StorePerGiBMonth: GiB}, Usage{StoreBytes: max, StoreSeconds: Month}, max, nil},
		{"storage term overflows", Rates{StorePerGiBMonth: max}, Usage{StoreBytes: max, StoreSeconds: max}, 0, ErrPriceOverflow},
		{"storage term one over", Rates{StorePerGiBMonth: max}, Usage{StoreBytes: GiB, StoreSeconds: Month + 1}, 0, ErrPriceOverflow},
		{"read term overflows", Rates{ReadPerGiB: max}, Usage{ReadBytes: GiB + 1}, 0, ErrPriceOverflow},
		// 9223372041149743106 × (2^31−1) = (2^64−1)·2^30 + 1073741822.
		{"rounding up overflows", Rates{ReadPerGiB: 1<<31 - 1}, Usage{ReadBytes: 9223372041149743106}, 0, ErrPriceOverflow},
		{"rounding up to max-1", Rates{ReadPerGiB: 1<<31 - 1}, Usage{ReadBytes: 9223372041149743105}, max - 1, nil},
		{"sum overflows", Rates{PerCall: max, ReadPerGiB: 1}, Usage{ReadBytes: 1}, 0, ErrPriceOverflow},
		{"sum at max", Rates{PerCall: max - 1, ReadPerGiB: 1}, Usage{ReadBytes: 1}, max, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Quote(tt.r, tt.u)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
			if err == nil {
				if ref, ok := quoteBig(tt.r, tt.u); !ok || ref != got {
					t.Fatalf("reference gives %d (ok %v)", ref, ok)
				}
			}
		})
	}
}

// quoteBig is the definition of Quote in math/big.
func quoteBig(r Rates, u Usage) (uint64, bool) {
	n := func(x uint64) *big.Int { return new(big.Int).SetUint64(x) }
	ceil := func(num, den *big.Int) *big.Int {
		q, m := new(big.Int).QuoRem(num, den, new(big.Int))
		if m.Sign() != 0 {
			q.Add(q, big.NewInt(1))
		}
		return q
	}
	total := n(r.PerCall)
	store := new(big.Int).Mul(n(u.StoreBytes), n(u.StoreSeconds))
	store.Mul(store, n(r.StorePerGiBMonth))
	total.Add(total, ceil(store, n(GiB*Month)))
	total.Add(total, ceil(new(big.Int).Mul(n(u.ReadBytes), n(r.ReadPerGiB)), n(GiB)))
	total.Add(total, ceil(new(big.Int).Mul(n(u.WriteBytes), n(r.WritePerGiB)), n(GiB)))
	return total.Uint64(), total.IsUint64()
}

func TestQuoteMatchesBig(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Values of every magnitude, so that both outcomes are common.
	v := func() uint64 { return rng.Uint64() >> rng.UintN(64) }
	for i := 0; i < 20000; i++ {
		r := Rates{PerCall: v() >> 8, StorePerGiBMonth: v(), ReadPerGiB: v(), WritePerGiB: v()}
		u := Usage{StoreBytes: v(), StoreSeconds: v(), ReadBytes: v(), WriteBytes: v()}
		got, err := Quote(r, u)
		want, ok := quoteBig(r, u)
		if ok != (err == nil) || ok && got != want {
			t.Fatalf("%+v %+v: got %d, %v; want %d, %v", r, u, got, err, want, ok)
		}
	}
}
