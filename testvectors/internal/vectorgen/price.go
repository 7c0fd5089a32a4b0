package vectorgen

import (
	"fmt"
	"math"
	"math/big"
)

// The price vectors are computed here with math/big from the formula of
// SPEC.md §8 (price arithmetic), independently of protocol.Quote; the
// conformance test runs protocol.Quote on them.

// Units of the rates: a GiB is 2^30 bytes, a month 30 days.
const (
	gib   = 1 << 30
	month = 30 * 24 * 60 * 60
)

type priceGroup struct {
	Tests []priceTest `json:"tests"`
}

type priceRates struct {
	PerCall          decimal `json:"perCall" desc:"protocol.Rates.PerCall, the schedule's per_call: charged once per call"`
	StorePerGiBMonth decimal `json:"storePerGiBMonth" desc:"protocol.Rates.StorePerGiBMonth, the schedule's store_per_gib_month: per 2^30 bytes held for 2,592,000 seconds"`
	ReadPerGiB       decimal `json:"readPerGiB" desc:"protocol.Rates.ReadPerGiB, the schedule's read_per_gib: per 2^30 bytes read"`
	WritePerGiB      decimal `json:"writePerGiB" desc:"protocol.Rates.WritePerGiB, the schedule's write_per_gib: per 2^30 bytes allocated for writing"`
}

type priceUsage struct {
	StoreBytes   decimal `json:"storeBytes" desc:"protocol.Usage.StoreBytes: bytes held for storeSeconds"`
	StoreSeconds decimal `json:"storeSeconds" desc:"protocol.Usage.StoreSeconds"`
	ReadBytes    decimal `json:"readBytes" desc:"protocol.Usage.ReadBytes: bytes read"`
	WriteBytes   decimal `json:"writeBytes" desc:"protocol.Usage.WriteBytes: bytes allocated for writing"`
}

type priceTest struct {
	testCase
	Rates       priceRates `json:"rates" desc:"the rates, each a uint64 as a decimal string"`
	Usage       priceUsage `json:"usage" desc:"the usage, each a uint64 as a decimal string"`
	StorageTerm bigDecimal `json:"storageTerm" desc:"ceil(storeBytes × storeSeconds × storePerGiBMonth / (2^30 × 2592000)), exact; may exceed 2^64 − 1"`
	ReadTerm    bigDecimal `json:"readTerm" desc:"ceil(readBytes × readPerGiB / 2^30), exact; may exceed 2^64 − 1"`
	WriteTerm   bigDecimal `json:"writeTerm" desc:"ceil(writeBytes × writePerGiB / 2^30), exact; may exceed 2^64 − 1"`
	Quote       *decimal   `json:"quote,omitempty" desc:"perCall + storageTerm + readTerm + writeTerm, a uint64 as a decimal string; given exactly for valid cases"`
}

// priceCase is one case before it is computed. want, when not empty, is the
// quote the case must come to, or "overflow": a check of the generator.
type priceCase struct {
	comment string
	r       [4]uint64 // per call, store, read, write
	u       [4]uint64 // store bytes, store seconds, read bytes, write bytes
	want    string
	flags   []string
}

var maxU64 = new(big.Int).SetUint64(math.MaxUint64)

// ceilDiv returns ceil(n / d) and whether d divides n.
func ceilDiv(n *big.Int, d int64) (*big.Int, bool) {
	q, r := new(big.Int).QuoRem(n, big.NewInt(d), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return q, r.Sign() == 0
}

func bigProduct(vs ...uint64) *big.Int {
	p := big.NewInt(1)
	for _, v := range vs {
		p.Mul(p, new(big.Int).SetUint64(v))
	}
	return p
}

func priceFile() (*file, error) {
	const max = math.MaxUint64
	g := newRNG("price")
	b := &builder{}
	floorMaxBytes := uint64(9223372041149743106) // × (2^31 − 1) / 2^30 = 2^64 − 1 with a remainder
	cases := []priceCase{
		{comment: "nothing used, all rates zero", want: "0"},
		{comment: "every usage the largest uint64, all rates zero", u: [4]uint64{max, max, max, max}, want: "0"},
		{comment: "every rate but per_call the largest uint64, nothing used", r: [4]uint64{0, max, max, max}, want: "0"},
		{comment: "per_call only", r: [4]uint64{10, 0, 0, 0}, want: "10"},
		{comment: "per_call 2^64 − 1 and nothing used: the largest quote", r: [4]uint64{max, 0, 0, 0}, want: fmt.Sprint(uint64(max))},
		{comment: "per_call 2^64 − 1 and one byte read at rate 1: the sum overflows", r: [4]uint64{max, 0, 1, 0}, u: [4]uint64{0, 0, 1, 0}, want: "overflow"},

		// The storage term.
		{comment: "1 GiB held for 0 seconds", r: [4]uint64{0, 50_000, 0, 0}, u: [4]uint64{gib, 0, 0, 0}, want: "0"},
		{comment: "0 bytes held for a month", r: [4]uint64{0, 50_000, 0, 0}, u: [4]uint64{0, month, 0, 0}, want: "0"},
		{comment: "1 byte held for 1 second at rate 1: rounds up to 1", r: [4]uint64{0, 1, 0, 0}, u: [4]uint64{1, 1, 0, 0}, want: "1"},
		{comment: "1 byte held for 1 second at rate 2^64 − 1", r: [4]uint64{0, max, 0, 0}, u: [4]uint64{1, 1, 0, 0}},
		{comment: "exactly 1 GiB held for exactly 1 month at 50,000: exactly the rate", r: [4]uint64{0, 50_000, 0, 0}, u: [4]uint64{gib, month, 0, 0}, want: "50000"},
		{comment: "1 GiB + 1 byte held for 1 month at 50,000: just over, rounds up", r: [4]uint64{0, 50_000, 0, 0}, u: [4]uint64{gib + 1, month, 0, 0}, want: "50001"},
		{comment: "1 GiB held for 1 month + 1 second at 50,000: just over, rounds up", r: [4]uint64{0, 50_000, 0, 0}, u: [4]uint64{gib, month + 1, 0, 0}, want: "50001"},
		{comment: "1 GiB − 1 byte held for 1 month at 50,000: just under, rounds up to the rate", r: [4]uint64{0, 50_000, 0, 0}, u: [4]uint64{gib - 1, month, 0, 0}, want: "50000"},
		{comment: "1 GiB held for 1 month − 1 second at 50,000: just under, rounds up to the rate", r: [4]uint64{0, 50_000, 0, 0}, u: [4]uint64{gib, month - 1, 0, 0}, want: "50000"},
		{comment: "2 GiB held for half a month at 7: one GiB-month", r: [4]uint64{0, 7, 0, 0}, u: [4]uint64{2 * gib, month / 2, 0, 0}, want: "7"},
		{comment: "2^30 × 2592000 bytes held for 1 second at 7: one GiB-month", r: [4]uint64{0, 7, 0, 0}, u: [4]uint64{gib * month, 1, 0, 0}, want: "7"},
		{comment: "1 byte held for 2^30 × 2592000 seconds at 7: one GiB-month", r: [4]uint64{0, 7, 0, 0}, u: [4]uint64{1, gib * month, 0, 0}, want: "7"},
		{comment: "1 byte held for 2^30 × 2592000 − 1 seconds at 1: just under one GiB-month", r: [4]uint64{0, 1, 0, 0}, u: [4]uint64{1, gib*month - 1, 0, 0}, want: "1"},
		{comment: "1 byte held for 2^30 × 2592000 + 1 seconds at 1: just over one GiB-month", r: [4]uint64{0, 1, 0, 0}, u: [4]uint64{1, gib*month + 1, 0, 0}, want: "2"},
		{comment: "1 GiB held for 1 month at rate 2^64 − 1: the product needs 116 bits, the term is exactly 2^64 − 1", r: [4]uint64{0, max, 0, 0}, u: [4]uint64{gib, month, 0, 0}, want: fmt.Sprint(uint64(max))},
		{comment: "1 GiB held for 1 month + 1 second at rate 2^64 − 1: the term overflows", r: [4]uint64{0, max, 0, 0}, u: [4]uint64{gib, month + 1, 0, 0}, want: "overflow"},
		{comment: "1 GiB − 1 byte held for 1 month at rate 2^64 − 1: rounds up below 2^64 − 1", r: [4]uint64{0, max, 0, 0}, u: [4]uint64{gib - 1, month, 0, 0}},
		{comment: "storage term whose floor is 2^64 − 1 with a remainder: rounding up overflows", r: [4]uint64{0, 1<<31 - 1, 0, 0}, u: [4]uint64{floorMaxBytes, month, 0, 0}, want: "overflow"},
		{comment: "every storage factor the largest uint64: a 192-bit product", r: [4]uint64{0, max, 0, 0}, u: [4]uint64{max, max, 0, 0}, want: "overflow"},
		{comment: "the largest bytes held for the largest time at rate 1", r: [4]uint64{0, 1, 0, 0}, u: [4]uint64{max, max, 0, 0}, want: "overflow"},
		{comment: "the largest bytes held for 1 second at rate 1", r: [4]uint64{0, 1, 0, 0}, u: [4]uint64{max, 1, 0, 0}},
		{comment: "the largest bytes held for 1 month at rate 1: 2^34", r: [4]uint64{0, 1, 0, 0}, u: [4]uint64{max, month, 0, 0}, want: fmt.Sprint(uint64(1) << 34)},

		// The read term.
		{comment: "1 byte read at rate 1: rounds up to 1", r: [4]uint64{0, 0, 1, 0}, u: [4]uint64{0, 0, 1, 0}, want: "1"},
		{comment: "1 GiB − 1 byte read at rate 1: just under", r: [4]uint64{0, 0, 1, 0}, u: [4]uint64{0, 0, gib - 1, 0}, want: "1"},
		{comment: "exactly 1 GiB read at rate 1", r: [4]uint64{0, 0, 1, 0}, u: [4]uint64{0, 0, gib, 0}, want: "1"},
		{comment: "1 GiB + 1 byte read at rate 1: just over", r: [4]uint64{0, 0, 1, 0}, u: [4]uint64{0, 0, gib + 1, 0}, want: "2"},
		{comment: "3 GiB read at 1,000", r: [4]uint64{0, 0, 1000, 0}, u: [4]uint64{0, 0, 3 * gib, 0}, want: "3000"},
		{comment: "half a GiB read at 3: 1.5 rounds up to 2", r: [4]uint64{0, 0, 3, 0}, u: [4]uint64{0, 0, gib / 2, 0}, want: "2"},
		{comment: "1 byte read at rate 2^64 − 1: 2^34", r: [4]uint64{0, 0, max, 0}, u: [4]uint64{0, 0, 1, 0}, want: fmt.Sprint(uint64(1) << 34)},
		{comment: "the largest read_bytes at rate 1: 2^34", r: [4]uint64{0, 0, 1, 0}, u: [4]uint64{0, 0, max, 0}, want: fmt.Sprint(uint64(1) << 34)},
		{comment: "the largest read_bytes at rate 2^30: exactly 2^64 − 1", r: [4]uint64{0, 0, gib, 0}, u: [4]uint64{0, 0, max, 0}, want: fmt.Sprint(uint64(max))},
		{comment: "the largest read_bytes at rate 2^30 + 1: the term overflows", r: [4]uint64{0, 0, gib + 1, 0}, u: [4]uint64{0, 0, max, 0}, want: "overflow"},
		{comment: "1 GiB read at rate 2^64 − 1: exactly 2^64 − 1", r: [4]uint64{0, 0, max, 0}, u: [4]uint64{0, 0, gib, 0}, want: fmt.Sprint(uint64(max))},
		{comment: "1 GiB + 1 byte read at rate 2^64 − 1: the term overflows", r: [4]uint64{0, 0, max, 0}, u: [4]uint64{0, 0, gib + 1, 0}, want: "overflow"},
		{comment: "read term whose floor is 2^64 − 1 with a remainder (SPEC.md §8): rounding up overflows", r: [4]uint64{0, 0, 1<<31 - 1, 0}, u: [4]uint64{0, 0, floorMaxBytes, 0}, want: "overflow"},

		// The write term.
		{comment: "1 byte written at rate 1: rounds up to 1", r: [4]uint64{0, 0, 0, 1}, u: [4]uint64{0, 0, 0, 1}, want: "1"},
		{comment: "exactly 1 GiB written at 1,000", r: [4]uint64{0, 0, 0, 1000}, u: [4]uint64{0, 0, 0, gib}, want: "1000"},
		{comment: "1 GiB + 1 byte written at 1,000: just over", r: [4]uint64{0, 0, 0, 1000}, u: [4]uint64{0, 0, 0, gib + 1}, want: "1001"},
		{comment: "300 MiB written at 1,000: 292.97 rounds up", r: [4]uint64{0, 0, 0, 1000}, u: [4]uint64{0, 0, 0, 300 << 20}, want: "293"},
		{comment: "the largest write_bytes at rate 2^30: exactly 2^64 − 1", r: [4]uint64{0, 0, 0, gib}, u: [4]uint64{0, 0, 0, max}, want: fmt.Sprint(uint64(max))},
		{comment: "1 GiB + 1 byte written at rate 2^64 − 1: the term overflows", r: [4]uint64{0, 0, 0, max}, u: [4]uint64{0, 0, 0, gib + 1}, want: "overflow"},
		{comment: "write term whose floor is 2^64 − 1 with a remainder: rounding up overflows", r: [4]uint64{0, 0, 0, 1<<31 - 1}, u: [4]uint64{0, 0, 0, floorMaxBytes}, want: "overflow"},

		// Sums.
		{comment: "300 MiB held for 90 days at 50,000, written at 1,000, plus 10 per call", r: [4]uint64{10, 50_000, 0, 1000}, u: [4]uint64{300 << 20, 90 * 86400, 0, 300 << 20}, want: "44249", flags: []string{"SpecExample"}},
		{comment: "300 MiB held for 90 days at 50,000", r: [4]uint64{0, 50_000, 0, 0}, u: [4]uint64{300 << 20, 90 * 86400, 0, 0}, want: "43946", flags: []string{"SpecExample"}},
		{comment: "1 byte held for 1 second, read and written, each at rate 1: each term rounds up on its own", r: [4]uint64{0, 1, 1, 1}, u: [4]uint64{1, 1, 1, 1}, want: "3"},
		{comment: "four terms adding up to exactly 2^64 − 1: per_call 2^62 − 1 and three terms of 2^62", r: [4]uint64{1<<62 - 1, 1 << 62, 1 << 62, 1 << 62}, u: [4]uint64{gib, month, gib, gib}, want: fmt.Sprint(uint64(max))},
		{comment: "per_call 2^62 and three terms of 2^62: the sum overflows", r: [4]uint64{1 << 62, 1 << 62, 1 << 62, 1 << 62}, u: [4]uint64{gib, month, gib, gib}, want: "overflow"},
		{comment: "a read term and a write term of 2^63 each: the sum overflows", r: [4]uint64{0, 0, 1 << 63, 1 << 63}, u: [4]uint64{0, 0, gib, gib}, want: "overflow"},
		{comment: "a storage term of 2^64 − 1 and a read term of 1: the sum overflows", r: [4]uint64{0, max, 1, 0}, u: [4]uint64{gib, month, 1, 0}, want: "overflow"},
		{comment: "per_call 2^64 − 4 and three 1-byte terms rounded up to 1: exactly 2^64 − 1", r: [4]uint64{max - 3, 1, 1, 1}, u: [4]uint64{1, 1, 1, 1}, want: fmt.Sprint(uint64(max))},
		{comment: "per_call 2^64 − 3 and three 1-byte terms rounded up to 1: the rounding alone overflows the sum", r: [4]uint64{max - 2, 1, 1, 1}, u: [4]uint64{1, 1, 1, 1}, want: "overflow"},
		{comment: "an allocation of 10 shares of 1 MiB for 30 days: store 50,000, write 1,000, 10 per call", r: [4]uint64{10, 50_000, 0, 1000}, u: [4]uint64{10 << 20, 30 * 86400, 0, 10 << 20}},
		{comment: "a read of 1 MiB at 2,000 per GiB and 5 per call", r: [4]uint64{5, 0, 2000, 0}, u: [4]uint64{0, 0, 1 << 20, 0}, want: "7"},
	}
	// Seeded random cases: the first with factors of at most 40 bits, so
	// that most are valid, the rest with factors of any size.
	for i := range 16 {
		maxBits := 40
		if i >= 10 {
			maxBits = 64
		}
		var c priceCase
		c.comment = fmt.Sprintf("seeded random case %d (factors of at most %d bits)", i+1, maxBits)
		c.flags = []string{"Random"}
		for j := range 4 {
			c.r[j] = randomBits(g, maxBits)
			c.u[j] = randomBits(g, maxBits)
		}
		cases = append(cases, c)
	}

	grp := priceGroup{}
	for _, pc := range cases {
		t, err := priceCaseTest(b, pc)
		if err != nil {
			return nil, fmt.Errorf("price case %q: %w", pc.comment, err)
		}
		grp.Tests = append(grp.Tests, t)
	}
	if q, rem := new(big.Int).QuoRem(bigProduct(floorMaxBytes, 1<<31-1), big.NewInt(gib), new(big.Int)); q.Cmp(maxU64) != 0 || rem.Sign() == 0 {
		return nil, fmt.Errorf("price: %d × (2^31 − 1) / 2^30 is not 2^64 − 1 with a remainder", floorMaxBytes)
	}

	return &file{
		name:      "price",
		algorithm: "scrip/v1 price quote",
		header: []string{
			"Quotes of protocol.Quote(rates, usage): every rate, usage and quote is a uint64 written as a decimal string.",
			"quote = perCall + storageTerm + readTerm + writeTerm, with storageTerm = ceil(storeBytes × storeSeconds × storePerGiBMonth / (2^30 × 2592000)), readTerm = ceil(readBytes × readPerGiB / 2^30) and writeTerm = ceil(writeBytes × writePerGiB / 2^30).",
			"Each product and quotient is exact (the storage product can need 192 bits) and each term is rounded up on its own. A term or a sum above 2^64 − 1 is an error: the call cannot be priced (result invalid, flag Overflow, no quote).",
			"The terms are given exactly, even above 2^64 − 1, to show which one overflows. Expected values are computed with arbitrary-precision integers.",
			"Specification: SPEC.md §8, price arithmetic.",
		},
		groups: []priceGroup{grp},
		b:      b,
	}, nil
}

// randomBits returns a uniformly random value of a uniformly random bit
// length from 0 to maxBits.
func randomBits(g *rng, maxBits int) uint64 {
	var buf [9]byte
	if _, err := g.Read(buf[:]); err != nil {
		panic(err)
	}
	n := int(buf[0]) % (maxBits + 1)
	v := uint64(0)
	for _, x := range buf[1:] {
		v = v<<8 | uint64(x)
	}
	if n == 0 {
		return 0
	}
	return v>>(64-n) | 1<<(n-1)
}

// priceCaseTest computes a case: its terms, its quote or overflow, and the
// flags that describe it.
func priceCaseTest(b *builder, pc priceCase) (priceTest, error) {
	r, u := pc.r, pc.u
	storeProd := bigProduct(u[0], u[1], r[1])
	readProd := bigProduct(u[2], r[2])
	writeProd := bigProduct(u[3], r[3])
	st, stExact := ceilDiv(storeProd, gib*month)
	rd, rdExact := ceilDiv(readProd, gib)
	wr, wrExact := ceilDiv(writeProd, gib)
	sum := new(big.Int).SetUint64(r[0])
	sum.Add(sum, st).Add(sum, rd).Add(sum, wr)
	overflow := sum.Cmp(maxU64) > 0

	flags := append([]string{}, pc.flags...)
	wide := false
	for _, p := range []*big.Int{storeProd, readProd, writeProd} {
		wide = wide || p.Cmp(maxU64) > 0
	}
	if wide {
		flags = append(flags, "WideProduct")
	}
	t := priceTest{
		Rates:       priceRates{decimal(r[0]), decimal(r[1]), decimal(r[2]), decimal(r[3])},
		Usage:       priceUsage{decimal(u[0]), decimal(u[1]), decimal(u[2]), decimal(u[3])},
		StorageTerm: bigDecimal{st}, ReadTerm: bigDecimal{rd}, WriteTerm: bigDecimal{wr},
	}
	got := "overflow"
	if overflow {
		t.testCase = b.invalid(pc.comment, append([]string{"Overflow"}, flags...)...)
	} else {
		q := decimal(sum.Uint64())
		got = fmt.Sprint(uint64(q))
		t.Quote = &q
		if stExact && rdExact && wrExact {
			flags = append(flags, "Exact")
		} else {
			flags = append(flags, "RoundUp")
		}
		if sum.Cmp(maxU64) == 0 {
			flags = append(flags, "MaxQuote")
		}
		t.testCase = b.valid(pc.comment, flags...)
	}
	if pc.want != "" && pc.want != got {
		return t, fmt.Errorf("comes to %s, want %s", got, pc.want)
	}
	return t, nil
}
