package vectorgen

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/scripnet/scrip/coin"
)

type keysetGroup struct {
	MintKey hexBytes     `json:"mintKey" hex:"32" desc:"the mint's Ed25519 identity key; every keyset must be signed by it"`
	Tests   []keysetTest `json:"tests"`
}

type keysetTest struct {
	testCase
	Keyset hexBytes `json:"keyset" desc:"signed keyset encoding, as coin.ParseKeyset reads it"`
	ID     hexBytes `json:"id,omitempty" hex:"32" desc:"keyset ID, SHA-256(tag || unsigned encoding); given for valid and acceptable cases"`
}

// ksEnc is a keyset encoding broken into its fields, so that one field at a
// time can be made wrong.
type ksEnc struct {
	version byte
	unit    string
	mintKey []byte
	times   [4]uint64 // not_before, issue_until, spend_until, deposit_until
	count   int       // the denomination count byte; -1 means len(keys)
	exps    []byte
	keys    [][]byte
}

func keysetFields(ks *coin.Keyset) ksEnc {
	e := ksEnc{
		version: coin.KeysetVersion,
		unit:    ks.Unit,
		mintKey: bytes.Clone(ks.MintKey),
		times:   [4]uint64{uint64(ks.NotBefore), uint64(ks.IssueUntil), uint64(ks.SpendUntil), uint64(ks.DepositUntil)},
		count:   -1,
	}
	for _, d := range ks.Denominations {
		e.exps = append(e.exps, d.Exponent)
		e.keys = append(e.keys, bytes.Clone(d.Key[:]))
	}
	return e
}

func (e ksEnc) clone() ksEnc {
	c := e
	c.mintKey = bytes.Clone(e.mintKey)
	c.exps = bytes.Clone(e.exps)
	c.keys = make([][]byte, len(e.keys))
	for i, k := range e.keys {
		c.keys[i] = bytes.Clone(k)
	}
	return c
}

// bytes returns the unsigned encoding: version, unit length and unit, mint
// key, four u64 times, count, then exponent and key per denomination.
func (e ksEnc) bytes() []byte {
	b := []byte{e.version, byte(len(e.unit))}
	b = append(b, e.unit...)
	b = append(b, e.mintKey...)
	for _, t := range e.times {
		b = binary.BigEndian.AppendUint64(b, t)
	}
	n := e.count
	if n < 0 {
		n = len(e.keys)
	}
	b = append(b, byte(n))
	for i, k := range e.keys {
		b = append(b, e.exps[i])
		b = append(b, k...)
	}
	return b
}

// keysetSigMessage returns the message the mint signs: tag || keyset ID.
func keysetSigMessage(enc []byte) []byte {
	id := sha256.Sum256(cat([]byte(tagKeyset), enc))
	return cat([]byte(tagKeysetSig), id[:])
}

// signKeyset returns enc followed by the mint's signature.
func signKeyset(mint ed25519.PrivateKey, enc []byte) []byte {
	return cat(enc, ed25519.Sign(mint, keysetSigMessage(enc)))
}

func keysetParams(unit string, exps ...uint8) coin.KeysetParams {
	return coin.KeysetParams{
		Unit:         unit,
		Exponents:    exps,
		NotBefore:    t0,
		IssueUntil:   t0.Add(30 * day),
		SpendUntil:   t0.Add(60 * day),
		DepositUntil: t0.Add(90 * day),
	}
}

// checkEncoding makes sure the hand-built encoding agrees with coin's.
func checkEncoding(mint ed25519.PrivateKey, ks *coin.Keyset) error {
	if want := signKeyset(mint, keysetFields(ks).bytes()); !bytes.Equal(want, ks.Bytes()) {
		return fmt.Errorf("hand-built encoding of keyset %x differs from coin's", ks.ID())
	}
	return nil
}

func keysetFile() (*file, error) {
	g := newRNG("keyset")
	b := &builder{}
	mint := g.edKey()
	other := g.edKey()
	mintPub := mint.Public().(ed25519.PublicKey)
	grp := keysetGroup{MintKey: hexBytes(mintPub)}
	add := func(c testCase, ks []byte) {
		grp.Tests = append(grp.Tests, keysetTest{testCase: c, Keyset: ks})
	}
	addValid := func(c testCase, ks *coin.Keyset) {
		id := ks.ID()
		grp.Tests = append(grp.Tests, keysetTest{testCase: c, Keyset: ks.Bytes(), ID: id[:]})
	}
	gen := func(p coin.KeysetParams) (*coin.Keyset, error) {
		ks, _, err := coin.GenerateKeyset(g, mint, p)
		if err != nil {
			return nil, err
		}
		return ks, checkEncoding(mint, ks)
	}

	// Valid keysets.
	base, err := gen(keysetParams("msat", 0, 1, 2))
	if err != nil {
		return nil, err
	}
	addValid(b.valid("three denominations: 1, 2 and 4 msat", "Normal"), base)
	ks, err := gen(keysetParams("sat", 5, 17, 40))
	if err != nil {
		return nil, err
	}
	addValid(b.valid("denominations 2^5, 2^17, 2^40", "Normal"), ks)
	if ks, err = gen(keysetParams("unit", 63)); err != nil {
		return nil, err
	}
	addValid(b.valid("one denomination of 2^63 units", "SingleDenomination", "LargestExponent"), ks)
	exps := make([]uint8, coin.MaxDenominations)
	for i := range exps {
		exps[i] = uint8(i)
	}
	longUnit := "Az09-_.abcdefghijklmnopqrstuvwxy"
	largest, err := gen(keysetParams(longUnit, exps...))
	if err != nil {
		return nil, err
	}
	if len(largest.Bytes()) != coin.MaxKeysetSize {
		return nil, fmt.Errorf("largest keyset is %d bytes, want %d", len(largest.Bytes()), coin.MaxKeysetSize)
	}
	addValid(b.valid("64 denominations 2^0 to 2^63 and a 32-byte unit using every character class: MaxKeysetSize bytes", "MaxDenominations", "LongestUnit"), largest)
	p := keysetParams("msat", 0)
	p.IssueUntil, p.SpendUntil, p.DepositUntil = p.NotBefore.Add(time.Second), p.NotBefore.Add(time.Second), p.NotBefore.Add(time.Second)
	if ks, err = gen(p); err != nil {
		return nil, err
	}
	addValid(b.valid("issue, spend and deposit windows all end one second after not_before", "EqualWindows"), ks)
	p = keysetParams("msat", 3)
	p.NotBefore, p.IssueUntil, p.SpendUntil, p.DepositUntil = time.Unix(0, 0), time.Unix(1, 0), time.Unix(math.MaxInt64, 0), time.Unix(math.MaxInt64, 0)
	if ks, err = gen(p); err != nil {
		return nil, err
	}
	addValid(b.valid("not_before 0, spend_until and deposit_until the largest int64", "ExtremeTimes"), ks)

	// A torsion-tagged mint signature on the base keyset.
	e := keysetFields(base)
	enc := e.bytes()
	tor := torsion()
	tagged := cat(enc, g.sign(edScalar(mint), mintPub, keysetSigMessage(enc), tor[1]))
	grp.Tests = append(grp.Tests, keysetTest{
		testCase: b.acceptable("mint signature with R = [r]B + T, T of order 8", "TorsionTagged"),
		Keyset:   tagged,
		ID:       func() []byte { id := base.ID(); return id[:] }(),
	})

	// Truncations and trailing bytes.
	full := base.Bytes()
	for n := range len(full) {
		add(b.invalid(fmt.Sprintf("truncated to %d of %d bytes", n, len(full)), "Truncated"), full[:n])
	}
	add(b.invalid("one zero byte appended", "TrailingBytes"), cat(full, []byte{0}))
	add(b.invalid("one 0xff byte appended", "TrailingBytes"), cat(full, []byte{0xff}))
	add(b.invalid("signature repeated", "TrailingBytes"), cat(full, full[len(full)-64:]))
	add(b.invalid("largest keyset with one byte appended: longer than MaxKeysetSize", "TrailingBytes"), cat(largest.Bytes(), []byte{0}))

	// Each variant changes one field and is signed by the mint, so the
	// field is the only fault.
	signed := func(c testCase, mod func(e *ksEnc)) {
		m := e.clone()
		mod(&m)
		add(c, signKeyset(mint, m.bytes()))
	}
	for _, v := range []byte{0, 2, 0xff} {
		signed(b.invalid(fmt.Sprintf("version %d", v), "WrongVersion"), func(e *ksEnc) { e.version = v })
	}
	signed(b.invalid("empty unit", "BadUnit"), func(e *ksEnc) { e.unit = "" })
	signed(b.invalid("unit with a space", "BadUnit"), func(e *ksEnc) { e.unit = "m sat" })
	signed(b.invalid("unit with a zero byte", "BadUnit"), func(e *ksEnc) { e.unit = "m\x00sat" })
	signed(b.invalid("unit with a non-ASCII letter", "BadUnit"), func(e *ksEnc) { e.unit = "m\xc3\xa9sat" })
	signed(b.invalid("unit of 33 bytes", "BadUnit"), func(e *ksEnc) { e.unit = strings.Repeat("u", coin.MaxUnitLen+1) })
	signed(b.invalid("issue_until equal to not_before", "WindowsOutOfOrder"), func(e *ksEnc) { e.times[1] = e.times[0] })
	signed(b.invalid("issue_until after spend_until", "WindowsOutOfOrder"), func(e *ksEnc) { e.times[1] = e.times[2] + 1 })
	signed(b.invalid("spend_until after deposit_until", "WindowsOutOfOrder"), func(e *ksEnc) { e.times[2] = e.times[3] + 1 })
	signed(b.invalid("deposit_until negative (high bit set)", "WindowsOutOfOrder"), func(e *ksEnc) { e.times[3] = 1 << 63 })
	signed(b.invalid("not_before = -1", "NegativeTime"), func(e *ksEnc) { e.times[0] = math.MaxUint64 })
	signed(b.invalid("exponents 0, 2, 1", "ExponentsNotIncreasing"), func(e *ksEnc) { e.exps = []byte{0, 2, 1} })
	signed(b.invalid("exponents 0, 1, 1", "ExponentsNotIncreasing"), func(e *ksEnc) { e.exps = []byte{0, 1, 1} })
	signed(b.invalid("exponents 2, 1, 0", "ExponentsNotIncreasing"), func(e *ksEnc) { e.exps = []byte{2, 1, 0} })
	signed(b.invalid("exponent 64", "ExponentTooLarge"), func(e *ksEnc) { e.exps[2] = 64 })
	signed(b.invalid("exponent 255", "ExponentTooLarge"), func(e *ksEnc) { e.exps[2] = 255 })
	signed(b.invalid("no denominations", "NoDenominations"), func(e *ksEnc) { e.exps, e.keys = nil, nil })
	signed(b.invalid("count byte 65 (more than MaxDenominations)", "TooManyDenominations"), func(e *ksEnc) { e.count = coin.MaxDenominations + 1 })
	signed(b.invalid("count byte 255", "TooManyDenominations"), func(e *ksEnc) { e.count = 255 })
	signed(b.invalid("count byte 2 with three denominations", "CountMismatch"), func(e *ksEnc) { e.count = 2 })
	signed(b.invalid("count byte 4 with three denominations", "CountMismatch"), func(e *ksEnc) { e.count = 4 })

	for k := 1; k < 8; k++ {
		signed(b.invalid(fmt.Sprintf("key of 2^1 is [%d]T for T of order 8, a point of order %d", k, order(tor[k])), "SmallOrderKey"),
			func(e *ksEnc) { e.keys[1] = tor[k].Bytes() })
	}
	signed(b.invalid("key of 2^1 is the identity", "IdentityKey"), func(e *ksEnc) { e.keys[1] = identity.Bytes() })
	for _, k := range []int{1, 2, 4} {
		signed(b.invalid(fmt.Sprintf("key of 2^1 plus a point of order %d", order(tor[k])), "MixedOrderKey"),
			func(e *ksEnc) { e.keys[1] = mustDecode(e.keys[1]).Add(mustDecode(e.keys[1]), tor[k]).Bytes() })
	}
	nonCanon := []struct {
		enc  []byte
		what string
	}{
		{nonCanonical(1, false), "y = 1 + p (the identity)"},
		{withSign(identity.Bytes()), "y = 1 with the sign bit set (the identity)"},
		{nonCanonical(0, false), "y = 0 + p (a point of order 4)"},
		{withSign(tor[4].Bytes()), "y = p - 1 with the sign bit set (the point of order 2)"},
		{nonCanonical(3, false), "y = 3 + p (a mixed-order point)"},
		{nonCanonical(18, true), "y = 18 + p, sign bit set (a mixed-order point)"},
	}
	for _, nc := range nonCanon {
		mustDecode(nc.enc)
		signed(b.invalid("key of 2^1 is the non-canonical encoding "+nc.what, "NonCanonicalKey"),
			func(e *ksEnc) { e.keys[1] = nc.enc })
	}
	signed(b.invalid("key of 2^1 is not a curve point", "KeyNotOnCurve"), func(e *ksEnc) { e.keys[1] = notOnCurve() })
	signed(b.invalid("keys of 2^0 and 2^1 are equal", "RepeatedKey"), func(e *ksEnc) { e.keys[1] = e.keys[0] })
	signed(b.invalid("keys of 2^0 and 2^2 are equal", "RepeatedKey"), func(e *ksEnc) { e.keys[2] = e.keys[0] })
	for _, nc := range nonCanon[:2] {
		signed(b.invalid("mint key field is the non-canonical encoding "+nc.what, "NonCanonicalMintKey"),
			func(e *ksEnc) { e.mintKey = nc.enc })
	}

	// Signature faults.
	add(b.invalid("bit 0 of R flipped", "ModifiedSignature"), flip(full, 8*(len(full)-64)))
	add(b.invalid("bit 0 of S flipped", "ModifiedSignature"), flip(full, 8*(len(full)-32)))
	add(b.invalid("bit 255 of S flipped", "ModifiedSignature"), flip(full, 8*len(full)-1))
	add(b.invalid("signature all zero", "ModifiedSignature"), cat(enc, make([]byte, 64)))
	add(b.invalid("S replaced by S + L", "NonCanonicalS"), cat(full[:len(full)-32], addL(full[len(full)-32:])))
	add(b.invalid("spend_until changed after signing", "ModifiedContent"), func() []byte {
		m := e.clone()
		m.times[2]++
		return cat(m.bytes(), full[len(full)-64:])
	}())
	add(b.invalid("key of 2^2 replaced after signing", "ModifiedContent"), func() []byte {
		m := e.clone()
		_, p := g.point()
		m.keys[2] = p.Bytes()
		return cat(m.bytes(), full[len(full)-64:])
	}())
	add(b.invalid("names the mint's key but is signed by another key", "OtherSigner"), cat(enc, ed25519.Sign(other, keysetSigMessage(enc))))
	add(b.invalid("names another mint key and is signed by it", "OtherSigner"), func() []byte {
		m := e.clone()
		m.mintKey = other.Public().(ed25519.PublicKey)
		return signKeyset(other, m.bytes())
	}())
	add(b.invalid("signature over the keyset ID without the tag", "WrongSignedMessage"), func() []byte {
		id := base.ID()
		return cat(enc, ed25519.Sign(mint, id[:]))
	}())
	add(b.invalid("signature over the unsigned encoding itself", "WrongSignedMessage"), cat(enc, ed25519.Sign(mint, enc)))

	return &file{
		name:      "keyset",
		algorithm: "scrip/v1 keyset",
		header: slices.Concat(coinHeader, []string{
			"Signed keysets, as coin.ParseKeyset(keyset, mintKey) reads them.",
			"Unsigned encoding: version (1) || unit length (1) || unit || mint key (32) || not_before, issue_until, spend_until, deposit_until (u64 each) || count (1) || count x (exponent (1) || key (32)); then the mint's Ed25519 signature over \"scrip/v1/keyset-sig\\x00\" || id, where id = SHA-256(\"scrip/v1/keyset\\x00\" || unsigned encoding).",
			"Specification: SPEC.md §2 (keysets) and §6 (signature rule).",
			"Every field has a fixed width, so a keyset has one encoding; non-canonical encodings can occur only inside keys and signatures, and those cases are here.",
		}),
		groups: []keysetGroup{grp},
		b:      b,
	}, nil
}
