package vectorgen

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"filippo.io/edwards25519"
	"github.com/scripnet/scrip/coin"
)

type coinVerifyGroup struct {
	Keyset  hexBytes         `json:"keyset" desc:"the signed keyset the verifier knows (its only one)"`
	MintKey hexBytes         `json:"mintKey" hex:"32" desc:"the mint's Ed25519 identity key"`
	Server  hexBytes         `json:"server" desc:"the verifier's own peer ID bytes (coin.Verifier.Server)"`
	Time    int64            `json:"time" desc:"verification time, Unix seconds"`
	Window  string           `json:"window" enum:"issue,spend,deposit" desc:"the keyset window the coin must be inside (coin.Verifier.Window)"`
	Tests   []coinVerifyTest `json:"tests"`
}

type coinVerifyTest struct {
	testCase
	Coin      hexBytes `json:"coin" desc:"coin encoding: keysetId (32) || u64 amount || coinPub (32) || designated (32) || sig (64) || root (32)"`
	PublicKey hexBytes `json:"publicKey" hex:"32" desc:"denomination key of the triple (publicKey, msg, sig), given in every case: the key of the coin's amount in the group's keyset, which the verifier checks sig with; where that keyset has no key for the coin (UnknownKeyset, AmountNotInKeyset), the key that made sig. For an encoding that does not parse, the key of the coin it was derived from (see header)"`
	Msg       hexBytes `json:"msg" desc:"the coin message of the coin, given in every case: \"scrip/v1/coin\\x00\" || keysetId || u64 amount || coinPub || designated; for an encoding that does not parse, that of the coin it was derived from (see header)"`
	Sig       hexBytes `json:"sig" hex:"64" desc:"the mint signature field of the coin, given in every case; for an encoding that does not parse, that of the coin it was derived from (see header)"`
}

// tripleHeader states, in the coin and spend files, which coin and key the
// triple (publicKey, msg, sig) of a case is taken from.
var tripleHeader = []string{
	"Every case carries the triple (publicKey, msg, sig). Its coin is the parsed coin or, for an encoding that does not parse (Truncated, TrailingBytes, AmountNotPowerOfTwo), the valid coin the encoding was cut from, extended or altered from: the first valid case of the file. msg is that coin's message \"scrip/v1/coin\\x00\" || keysetId || u64 amount || coinPub || designated, and sig its signature field.",
	"publicKey is the key of the coin's amount in the group's keyset when the coin names that keyset and the keyset offers that amount: the key the verifier checks sig with. Otherwise (UnknownKeyset, AmountNotInKeyset) it is the denomination key that made sig; for a coin of another keyset, the key of its amount there.",
	"So msg and sig agree with the encoding on every byte both hold but the amount field, and the triple passes both RFC 8032 (cofactorless, as crypto/ed25519.Verify) and ZIP-215 in every valid case and every invalid case whose error is not coin.ErrBadSignature; acceptable cases flagged TorsionTagged, SmallOrderR or NonCanonicalR pass ZIP-215 only.",
}

// mintTriple returns the triple of coin c by the rule of tripleHeader:
// signer is the key that made c.Sig, used when the group's keyset has no key
// for c.
func mintTriple(m *mintFixture, c *coin.Coin, signer []byte) (pub, msg, sig hexBytes) {
	if k, ok := m.ks.Key(c.Amount); ok && c.KeysetID == m.ks.ID() {
		pub = k[:]
	} else if pub = signer; pub == nil {
		panic(fmt.Sprintf("vectorgen: no key for the coin of amount %d under keyset %x", c.Amount, c.KeysetID))
	}
	return pub, c.Message(), c.Sig[:]
}

// coinTest returns the case of encoding enc, derived from coin src, which
// signer signed.
func coinTest(c testCase, m *mintFixture, enc []byte, src *coin.Coin, signer []byte) coinVerifyTest {
	cn, err := coin.ParseCoin(enc)
	if err != nil {
		cn = src
	}
	pub, msg, sig := mintTriple(m, cn, signer)
	return coinVerifyTest{testCase: c, Coin: enc, PublicKey: pub, Msg: msg, Sig: sig}
}

// coinFault is a coin that fails one rule of the verifier, with the secret
// scalar of its coin key when there is one (nil otherwise) and, when the
// group's keyset has no key for it, the denomination key that signed it.
type coinFault struct {
	comment string
	flag    string
	coin    *coin.Coin
	key     *edwards25519.Scalar
	signer  []byte
}

// coinFaults returns the coin faults shared by the coin and spend files.
// base is a valid bearer coin of 1 unit and baseKey its coin key's scalar;
// wl withdraws more coins from m and from other, a second keyset.
func coinFaults(g *rng, m, other *mintFixture, wl *wallet, base *coin.Coin, baseKey *edwards25519.Scalar, server, otherServer []byte) ([]coinFault, error) {
	tor := torsion()
	var out []coinFault
	var key *edwards25519.Scalar // the coin key of the coin being added
	var signer []byte            // the key that signed it, if the group's keyset has none for it
	add := func(comment, flag string, c *coin.Coin) {
		out = append(out, coinFault{comment, flag, c, key, signer})
		key, signer = nil, nil
	}
	mod := func(f func(c *coin.Coin)) *coin.Coin {
		c := *base
		key = baseKey
		f(&c)
		return &c
	}
	fresh := func(amount uint64, des [32]byte) *coin.Coin {
		a, pub, root := g.coinKey()
		key = a
		return m.forge(g, amount, pub, root, des)
	}

	is, err := wl.withdraw(other, 1, [32]byte{})
	if err != nil {
		return nil, err
	}
	key, signer = edScalar(is.key), other.key(1)
	add("coin of another keyset of the same mint", "UnknownKeyset", is.coin)
	add("keyset ID with bit 0 flipped, validly signed", "UnknownKeyset", func() *coin.Coin {
		c := fresh(1, [32]byte{})
		c.KeysetID[0] ^= 1
		m.sign(g, c, 1, nil)
		signer = m.key(1)
		return c
	}())

	add("bit 0 of R flipped", "ModifiedSignature", mod(func(c *coin.Coin) { c.Sig[0] ^= 1 }))
	add("bit 0 of S flipped", "ModifiedSignature", mod(func(c *coin.Coin) { c.Sig[32] ^= 1 }))
	add("bit 255 of S flipped", "ModifiedSignature", mod(func(c *coin.Coin) { c.Sig[63] ^= 0x80 }))
	add("signature all zero", "ModifiedSignature", mod(func(c *coin.Coin) { c.Sig = [64]byte{} }))
	add("S replaced by S + L", "NonCanonicalS", mod(func(c *coin.Coin) { copy(c.Sig[32:], addL(c.Sig[32:])) }))
	add("amount changed from 1 to 2 after signing", "AmountMismatch", mod(func(c *coin.Coin) { c.Amount = 2 }))
	add("amount 1 signed by the key of 2", "AmountMismatch", func() *coin.Coin {
		c := fresh(1, [32]byte{})
		m.sign(g, c, 2, nil)
		return c
	}())
	add("coin key and root replaced by another valid pair after signing", "ModifiedMessage", mod(func(c *coin.Coin) {
		key, c.Pub, c.Root = g.coinKey()
	}))
	add("designation set to the verifier's after signing", "ModifiedMessage", mod(func(c *coin.Coin) { c.Designated = coin.Designation(server) }))
	add("amount 16, which the keyset does not offer, signed by the key of 8", "AmountNotInKeyset", func() *coin.Coin {
		c := fresh(8, [32]byte{})
		c.Amount = 16
		m.sign(g, c, 8, nil)
		signer = m.key(8)
		return c
	}())
	add("amount 2^62, which the keyset does not offer, signed by the key of 1", "AmountNotInKeyset", func() *coin.Coin {
		c := fresh(1, [32]byte{})
		c.Amount = 1 << 62
		m.sign(g, c, 1, nil)
		signer = m.key(1)
		return c
	}())
	if is, err = wl.withdraw(m, 2, coin.Designation(otherServer)); err != nil {
		return nil, err
	}
	key = edScalar(is.key)
	add("coin designated to another server", "DesignatedToOther", is.coin)
	add("designation of random bytes, validly signed", "DesignatedToOther", fresh(4, g.array32()))

	forgeKey := func(pub, root []byte) *coin.Coin {
		return m.forge(g, 1, [32]byte(pub), [32]byte(root), [32]byte{})
	}
	_, _, root := g.coinKey()
	add("coin key is a point of order 8, validly signed", "SmallOrderCoinKey", forgeKey(tor[1].Bytes(), root[:]))
	add("coin key is the point of order 2, validly signed", "SmallOrderCoinKey", forgeKey(tor[4].Bytes(), root[:]))
	add("coin key is a point of order 4 and root a point of order 8", "SmallOrderCoinKey", forgeKey(tor[2].Bytes(), tor[3].Bytes()))
	add("coin key and root are the identity", "IdentityCoinKey", forgeKey(identity.Bytes(), identity.Bytes()))
	add("coin key is the identity and root a point of order 8", "IdentityCoinKey", forgeKey(identity.Bytes(), tor[1].Bytes()))
	q, qp := g.point()
	eight := new(edwards25519.Point).ScalarBaseMult(edwards25519.NewScalar().Multiply(q, scalarFromUint(8)))
	for _, k := range []int{1, 4} {
		mixed := new(edwards25519.Point).Add(eight, tor[k])
		add(fmt.Sprintf("coin key [8]q plus a point of order %d, root q", order(tor[k])), "MixedOrderCoinKey", forgeKey(mixed.Bytes(), qp.Bytes()))
	}
	add("coin key is y = 3 + p, a non-canonical encoding", "NonCanonicalCoinKey", forgeKey(nonCanonical(3, false), qp.Bytes()))
	add("coin key is the identity with the sign bit set", "NonCanonicalCoinKey", forgeKey(withSign(identity.Bytes()), identity.Bytes()))
	add("coin key is not a curve point", "CoinKeyNotOnCurve", forgeKey(notOnCurve(), qp.Bytes()))
	for _, nc := range []struct {
		enc  []byte
		what string
	}{{nonCanonical(3, false), "y = 3 + p"}, {nonCanonical(18, true), "y = 18 + p with the sign bit set"}} {
		p := mustDecode(nc.enc)
		add("root is "+nc.what+", a non-canonical encoding of a mixed-order point q; coin key [8]q", "NonCanonicalRoot",
			forgeKey(new(edwards25519.Point).MultByCofactor(p).Bytes(), nc.enc))
	}
	add("root is not [1/8] of the coin key", "RootMismatch", mod(func(c *coin.Coin) { _, p := g.point(); c.Root = [32]byte(p.Bytes()) }))
	add("root negated (sign bit flipped)", "RootMismatch", mod(func(c *coin.Coin) { c.Root[31] ^= 0x80 }))
	add("root equal to the coin key", "RootMismatch", mod(func(c *coin.Coin) { c.Root = c.Pub }))
	add("root is not a curve point", "RootNotOnCurve", mod(func(c *coin.Coin) { c.Root = [32]byte(notOnCurve()) }))
	return out, nil
}

func coinVerifyFile() (*file, error) {
	g := newRNG("coin_verify")
	b := &builder{}
	mint := g.edKey()
	m, err := newMint(g, mint, keysetParams("msat", 0, 1, 2, 3, 63))
	if err != nil {
		return nil, err
	}
	other, err := newMint(g, mint, keysetParams("msat", 0, 1, 2, 3, 63))
	if err != nil {
		return nil, err
	}
	wl := &wallet{seed: g.array32()}
	server, otherServer := g.peerID(), g.peerID()
	tor := torsion()
	ks := m.ks
	group := func(t time.Time, w coin.Window) coinVerifyGroup {
		return coinVerifyGroup{Keyset: ks.Bytes(), MintKey: hexBytes(m.pub), Server: server, Time: t.Unix(), Window: w.String()}
	}
	inside := group(t0.Add(day), coin.WindowSpend)
	add := func(c testCase, cn *coin.Coin) {
		inside.Tests = append(inside.Tests, coinTest(c, m, cn.Bytes(), cn, nil))
	}
	var base *coin.Coin
	// addRaw adds an encoding derived from base that does not parse.
	addRaw := func(c testCase, enc []byte) { inside.Tests = append(inside.Tests, coinTest(c, m, enc, base, nil)) }

	for _, amount := range []uint64{1, 2, 4, 8, 1 << 63} {
		is, err := wl.withdraw(m, amount, [32]byte{})
		if err != nil {
			return nil, err
		}
		if base == nil {
			base = is.coin
		}
		add(b.valid(fmt.Sprintf("bearer coin of %d msat", amount), "Bearer"), is.coin)
	}
	is, err := wl.withdraw(m, 4, coin.Designation(server))
	if err != nil {
		return nil, err
	}
	add(b.valid("coin designated to the verifier", "Designated"), is.coin)
	for _, k := range []int{1, 4} {
		c := *is.coin
		c.Root = [32]byte(mustDecode(c.Root[:]).Add(mustDecode(c.Root[:]), tor[k]).Bytes())
		add(b.valid(fmt.Sprintf("the coin above with a point of order %d added to its root", order(tor[k])), "TorsionRoot"), &c)
	}
	q := mustDecode([]byte{3, 31: 0})
	add(b.valid("root is the canonical encoding of a mixed-order point q (y = 3); coin key [8]q", "MixedOrderRoot"),
		m.forge(g, 2, [32]byte(new(edwards25519.Point).MultByCofactor(q).Bytes()), [32]byte(q.Bytes()), [32]byte{}))

	for _, k := range []int{1, 4} {
		_, pub, root := g.coinKey()
		c := &coin.Coin{KeysetID: ks.ID(), Amount: 8, Pub: pub, Root: root}
		m.sign(g, c, 8, tor[k])
		add(b.acceptable(fmt.Sprintf("mint signature with R = [r]B + T, T of order %d", order(tor[k])), "TorsionTagged"), c)
	}
	for _, r := range []struct {
		enc  []byte
		flag string
		what string
	}{
		{tor[1].Bytes(), "SmallOrderR", "a point of order 8"},
		{nonCanonical(1, false), "NonCanonicalR", "y = 1 + p, a non-canonical identity"},
		{withSign(tor[4].Bytes()), "NonCanonicalR", "y = p - 1 with the sign bit set, a non-canonical encoding of the point of order 2"},
	} {
		_, pub, root := g.coinKey()
		c := &coin.Coin{KeysetID: ks.ID(), Amount: 1 << 63, Pub: pub, Root: root}
		copy(c.Sig[:], schnorr(m.x[1<<63], m.key(1<<63), c.Message(), edwards25519.NewScalar(), r.enc))
		add(b.acceptable("mint signature with r = 0 and R = "+r.what, r.flag), c)
	}

	enc := base.Bytes()
	for n := range len(enc) {
		addRaw(b.invalid(fmt.Sprintf("truncated to %d of %d bytes", n, len(enc)), "Truncated"), enc[:n])
	}
	addRaw(b.invalid("one zero byte appended", "TrailingBytes"), cat(enc, []byte{0}))
	addRaw(b.invalid("64 bytes appended (a spend's length)", "TrailingBytes"), cat(enc, make([]byte, 64)))
	for _, a := range []uint64{0, 3, 1<<63 + 1} {
		e := append([]byte(nil), enc...)
		binary.BigEndian.PutUint64(e[32:40], a)
		addRaw(b.invalid(fmt.Sprintf("amount %d", a), "AmountNotPowerOfTwo"), e)
	}
	faults, err := coinFaults(g, m, other, wl, base, nil, server, otherServer)
	if err != nil {
		return nil, err
	}
	for _, f := range faults {
		inside.Tests = append(inside.Tests, coinTest(b.invalid(f.comment, f.flag), m, f.coin.Bytes(), f.coin, f.signer))
	}

	groups := []coinVerifyGroup{inside}
	window := func(t time.Time, w coin.Window, c testCase) {
		grp := group(t, w)
		grp.Tests = []coinVerifyTest{coinTest(c, m, enc, base, nil)}
		groups = append(groups, grp)
	}
	nb, su, du := time.Unix(ks.NotBefore, 0), time.Unix(ks.SpendUntil, 0), time.Unix(ks.DepositUntil, 0)
	window(nb, coin.WindowSpend, b.valid("verified at not_before", "AtNotBefore"))
	window(nb.Add(-time.Second), coin.WindowSpend, b.invalid("verified one second before not_before", "BeforeNotBefore"))
	window(su.Add(-time.Second), coin.WindowSpend, b.valid("verified one second before spend_until", "LastSecond"))
	window(su, coin.WindowSpend, b.invalid("verified at spend_until", "AtSpendUntil"))
	window(su, coin.WindowDeposit, b.valid("verified at spend_until in the deposit window", "DepositWindow"))
	window(du, coin.WindowDeposit, b.invalid("verified at deposit_until in the deposit window", "AtDepositUntil"))

	return &file{
		name:      "coin_verify",
		algorithm: "scrip/v1 coin verification",
		header: slices.Concat(coinHeader, []string{
			"Coins checked by coin.Verifier{Keysets: the group's keyset, Server: server, Window: window}.VerifyCoin(coin.ParseCoin(coin), time).",
			"msg = \"scrip/v1/coin\\x00\" || keysetId || u64 amount || coinPub || designated; designated is zero or SHA-256(\"scrip/v1/designate\\x00\" || server).",
		}, tripleHeader, []string{
			"Specification: SPEC.md §4 (coins) and §6 (verification rule, in the order errors are reported).",
			"The coin key must be canonical, of prime order and proven so by its root q: root canonical, [8]q = coinPub, coinPub not the identity.",
		}),
		groups: groups,
		b:      b,
	}, nil
}
