package protocol

import (
	"fmt"
	"math/bits"
)

// Price arithmetic is defined here once, so that client and server always
// agree to the unit. All amounts are uint64 counts of a keyset's unit.
//
// The quote of a call under rates r for usage u is
//
//	r.PerCall
//	+ ceil(u.StoreBytes × u.StoreSeconds × r.StorePerGiBMonth / (GiB × Month))
//	+ ceil(u.ReadBytes  × r.ReadPerGiB  / GiB)
//	+ ceil(u.WriteBytes × r.WritePerGiB / GiB)
//
// with each product and quotient exact (no intermediate rounding or
// overflow: products are computed in 192 bits), each term rounded up on
// its own, and an error if a term or the sum exceeds 2^64 − 1.
const (
	// GiB is the byte unit of rates: 2^30 bytes.
	GiB = 1 << 30
	// Month is the time unit of storage rates: 30 days, 2,592,000 seconds.
	Month = 30 * 24 * 60 * 60
)

// Rates are the prices of a schedule, in its unit. The zero value makes
// every call free.
type Rates struct {
	// PerCall is charged once for every paid call.
	PerCall uint64
	// StorePerGiBMonth is charged for holding bytes for a time.
	StorePerGiBMonth uint64
	// ReadPerGiB is charged for bytes read.
	ReadPerGiB uint64
	// WritePerGiB is charged for bytes allocated for writing.
	WritePerGiB uint64
}

// Usage is what one paid call consumes. The zero value is a call that
// costs only PerCall.
type Usage struct {
	// StoreBytes are held for StoreSeconds.
	StoreBytes   uint64
	StoreSeconds uint64
	// ReadBytes are read.
	ReadBytes uint64
	// WriteBytes are allocated for writing.
	WriteBytes uint64
}

// Quote returns the price of a call with usage u under rates r, as defined
// above, or an error wrapping [ErrPriceOverflow].
func Quote(r Rates, u Usage) (uint64, error) {
	terms := [...]struct {
		a, b, c, d uint64
		what       string
	}{
		{u.StoreBytes, u.StoreSeconds, r.StorePerGiBMonth, GiB * Month, "storage"},
		{u.ReadBytes, 1, r.ReadPerGiB, GiB, "read"},
		{u.WriteBytes, 1, r.WritePerGiB, GiB, "write"},
	}
	total := r.PerCall
	for _, t := range terms {
		v, ok := mulDivCeil(t.a, t.b, t.c, t.d)
		if !ok {
			return 0, fmt.Errorf("%w: %s term", ErrPriceOverflow, t.what)
		}
		var carry uint64
		total, carry = bits.Add64(total, v, 0)
		if carry != 0 {
			return 0, fmt.Errorf("%w: sum", ErrPriceOverflow)
		}
	}
	return total, nil
}

// mulDivCeil returns ceil(a·b·c / d) and true, or false if it exceeds
// 2^64 − 1. d must not be zero. The product is formed in 192 bits and
// divided by long division.
func mulDivCeil(a, b, c, d uint64) (uint64, bool) {
	// a·b = hi:lo (128 bits); (hi:lo)·c = p2:p1:p0 (192 bits).
	hi, lo := bits.Mul64(a, b)
	c0, p0 := bits.Mul64(lo, c)
	c1, m1 := bits.Mul64(hi, c)
	p1, carry := bits.Add64(m1, c0, 0)
	p2 := c1 + carry // cannot overflow: the product is below 2^192
	q2, rem := bits.Div64(0, p2, d)
	q1, rem := bits.Div64(rem, p1, d)
	q0, rem := bits.Div64(rem, p0, d)
	if q2 != 0 || q1 != 0 {
		return 0, false
	}
	if rem != 0 {
		if q0 == ^uint64(0) {
			return 0, false
		}
		q0++
	}
	return q0, true
}
