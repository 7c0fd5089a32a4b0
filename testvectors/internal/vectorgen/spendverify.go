package vectorgen

import (
	"fmt"
	"slices"
	"time"

	"filippo.io/edwards25519"
	"github.com/scripnet/scrip/coin"
)

type spendVerifyGroup struct {
	Keyset  hexBytes          `json:"keyset" desc:"the signed keyset the verifier knows (its only one)"`
	MintKey hexBytes          `json:"mintKey" hex:"32" desc:"the mint's Ed25519 identity key"`
	Time    int64             `json:"time" desc:"verification time, Unix seconds"`
	Window  string            `json:"window" enum:"issue,spend,deposit" desc:"the keyset window the coin must be inside (coin.Verifier.Window)"`
	Tests   []spendVerifyTest `json:"tests"`
}

type spendVerifyTest struct {
	testCase
	Server        hexBytes `json:"server" desc:"the verifier's own peer ID bytes (coin.Verifier.Server)"`
	Digest        hexBytes `json:"digest" hex:"32" desc:"digest of the request the spend must pay for"`
	Spend         hexBytes `json:"spend" desc:"spend encoding: the coin encoding (200 bytes) || spend signature (64)"`
	CoinPublicKey hexBytes `json:"coinPublicKey" hex:"32" desc:"the coin key of the spend, given in every case; for an encoding that does not parse, that of the spend it was derived from (see header)"`
	SpendMsg      hexBytes `json:"spendMsg" desc:"the message the verifier checks spendSig on, given in every case: \"scrip/v1/spend\\x00\" || u16 len(server) || server || digest"`
	SpendSig      hexBytes `json:"spendSig" hex:"64" desc:"the spend signature of the spend, given in every case; for an encoding that does not parse, that of the spend it was derived from (see header)"`
	PublicKey     hexBytes `json:"publicKey" hex:"32" desc:"denomination key of the triple (publicKey, msg, sig), given in every case: the key of the coin's amount in the group's keyset, which the verifier checks sig with; where that keyset has no key for the coin (UnknownKeyset, AmountNotInKeyset), the key that made sig. For an encoding that does not parse, the key of the coin it was derived from (see header)"`
	Msg           hexBytes `json:"msg" desc:"the coin message of the spend's coin, given in every case: \"scrip/v1/coin\\x00\" || keysetId || u64 amount || coinPub || designated; for an encoding that does not parse, that of the coin it was derived from (see header)"`
	Sig           hexBytes `json:"sig" hex:"64" desc:"the mint signature field of the spend's coin, given in every case; for an encoding that does not parse, that of the coin it was derived from (see header)"`
}

// spendTest returns the case of encoding enc, derived from spend src, whose
// coin signer signed (see mintTriple).
func spendTest(c testCase, m *mintFixture, server []byte, digest [32]byte, enc []byte, src *coin.Spend, signer []byte) spendVerifyTest {
	s, err := coin.ParseSpend(enc)
	if err != nil {
		s = src
	}
	t := spendVerifyTest{testCase: c, Server: server, Digest: digest[:], Spend: enc}
	t.CoinPublicKey = s.Pub[:]
	t.SpendMsg = coin.SpendMessage(server, digest)
	t.SpendSig = s.SpendSig[:]
	t.PublicKey, t.Msg, t.Sig = mintTriple(m, &s.Coin, signer)
	return t
}

// spendWith signs c for server and digest with the coin key scalar a (nil:
// the identity and S = 0, which verifies under ZIP-215 for any small-order
// key and message), adding torsion t to R (nil for none).
func spendWith(g *rng, c *coin.Coin, a *edwards25519.Scalar, server []byte, digest [32]byte, t *edwards25519.Point) *coin.Spend {
	s := &coin.Spend{Coin: *c}
	if a == nil {
		copy(s.SpendSig[:], identity.Bytes())
	} else {
		copy(s.SpendSig[:], g.sign(a, c.Pub[:], coin.SpendMessage(server, digest), t))
	}
	return s
}

func spendVerifyFile() (*file, error) {
	g := newRNG("spend_verify")
	b := &builder{}
	mint := g.edKey()
	m, err := newMint(g, mint, keysetParams("msat", 0, 1, 2, 3))
	if err != nil {
		return nil, err
	}
	other, err := newMint(g, mint, keysetParams("msat", 0, 1, 2, 3))
	if err != nil {
		return nil, err
	}
	wl := &wallet{seed: g.array32()}
	server, otherServer := g.peerID(), g.peerID()
	tor := torsion()
	ks := m.ks
	group := func(t time.Time, w coin.Window) spendVerifyGroup {
		return spendVerifyGroup{Keyset: ks.Bytes(), MintKey: hexBytes(m.pub), Time: t.Unix(), Window: w.String()}
	}
	inside := group(t0.Add(day), coin.WindowSpend)
	digest := func() [32]byte { return g.array32() }
	add := func(c testCase, srv []byte, d [32]byte, s *coin.Spend) {
		inside.Tests = append(inside.Tests, spendTest(c, m, srv, d, s.Bytes(), s, nil))
	}
	var baseSpend *coin.Spend
	// addRaw adds an encoding derived from baseSpend that does not parse.
	addRaw := func(c testCase, d [32]byte, enc []byte) {
		inside.Tests = append(inside.Tests, spendTest(c, m, server, d, enc, baseSpend, nil))
	}
	spend := func(is *issuance, srv []byte, d [32]byte) (*coin.Spend, error) {
		return coin.NewSpend(is.coin, is.key, srv, d)
	}

	var base *issuance
	var baseDigest [32]byte
	for _, amount := range []uint64{1, 2, 4, 8} {
		is, err := wl.withdraw(m, amount, [32]byte{})
		if err != nil {
			return nil, err
		}
		d := digest()
		s, err := spend(is, server, d)
		if err != nil {
			return nil, err
		}
		if base == nil {
			base, baseSpend, baseDigest = is, s, d
		}
		add(b.valid(fmt.Sprintf("bearer coin of %d msat", amount), "Bearer"), server, d, s)
	}
	is, err := wl.withdraw(m, 2, coin.Designation(server))
	if err != nil {
		return nil, err
	}
	d := digest()
	s, err := spend(is, server, d)
	if err != nil {
		return nil, err
	}
	add(b.valid("coin designated to the verifier", "Designated"), server, d, s)
	for _, srv := range [][]byte{g.bytes(coin.MaxServerIDLen), {0x2a}} {
		flag := "LongestServerID"
		if len(srv) == 1 {
			flag = "ShortestServerID"
		}
		d := digest()
		s, err := spend(base, srv, d)
		if err != nil {
			return nil, err
		}
		add(b.valid(fmt.Sprintf("bearer coin spent at a server with a %d-byte peer ID", len(srv)), flag), srv, d, s)
	}

	for _, k := range []int{1, 4} {
		s := *baseSpend
		s.Root = [32]byte(mustDecode(s.Root[:]).Add(mustDecode(s.Root[:]), tor[k]).Bytes())
		add(b.valid(fmt.Sprintf("the first spend with a point of order %d added to its root", order(tor[k])), "TorsionRoot"), server, baseDigest, &s)
	}

	for _, k := range []int{1, 4} {
		a, pub, root := g.coinKey()
		c := &coin.Coin{KeysetID: ks.ID(), Amount: 4, Pub: pub, Root: root}
		m.sign(g, c, 4, tor[k])
		d := digest()
		add(b.acceptable(fmt.Sprintf("mint signature with R = [r]B + T, T of order %d", order(tor[k])), "TorsionTagged"), server, d, spendWith(g, c, a, server, d, nil))
	}
	for _, k := range []int{1, 2} {
		d := digest()
		add(b.acceptable(fmt.Sprintf("spend signature with R = [r]B + T, T of order %d", order(tor[k])), "TorsionTaggedSpend"),
			server, d, spendWith(g, base.coin, edScalar(base.key), server, d, tor[k]))
	}

	enc := baseSpend.Bytes()
	for n := range len(enc) {
		addRaw(b.invalid(fmt.Sprintf("truncated to %d of %d bytes", n, len(enc)), "Truncated"), baseDigest, enc[:n])
	}
	addRaw(b.invalid("one zero byte appended", "TrailingBytes"), baseDigest, cat(enc, []byte{0}))
	addRaw(b.invalid("another spend signature appended", "TrailingBytes"), baseDigest, cat(enc, enc[coin.CoinSize:]))
	addRaw(b.invalid("amount 3", "AmountNotPowerOfTwo"), baseDigest, func() []byte {
		e := append([]byte(nil), enc...)
		e[39] = 3
		return e
	}())

	other1, err := spend(base, otherServer, baseDigest)
	if err != nil {
		return nil, err
	}
	add(b.invalid("spend made for another server", "OtherServer"), server, baseDigest, other1)
	prefix, err := spend(base, server[:len(server)-1], baseDigest)
	if err != nil {
		return nil, err
	}
	add(b.invalid("spend made for the verifier's peer ID without its last byte", "OtherServer"), server, baseDigest, prefix)
	add(b.invalid("spend made for another request digest", "OtherDigest"), server, digest(), baseSpend)
	modSpend := func(f func(s *coin.Spend)) *coin.Spend {
		s := *baseSpend
		f(&s)
		return &s
	}
	add(b.invalid("bit 0 of the spend signature's R flipped", "ModifiedSpendSignature"), server, baseDigest, modSpend(func(s *coin.Spend) { s.SpendSig[0] ^= 1 }))
	add(b.invalid("bit 0 of the spend signature's S flipped", "ModifiedSpendSignature"), server, baseDigest, modSpend(func(s *coin.Spend) { s.SpendSig[32] ^= 1 }))
	add(b.invalid("spend signature all zero", "ModifiedSpendSignature"), server, baseDigest, modSpend(func(s *coin.Spend) { s.SpendSig = [64]byte{} }))
	add(b.invalid("the mint signature as spend signature", "ModifiedSpendSignature"), server, baseDigest, modSpend(func(s *coin.Spend) { s.SpendSig = s.Sig }))
	add(b.invalid("spend signature's S replaced by S + L", "NonCanonicalSpendS"), server, baseDigest, modSpend(func(s *coin.Spend) { copy(s.SpendSig[32:], addL(s.SpendSig[32:])) }))
	add(b.invalid("spend signed by another coin's key", "WrongSpendKey"), server, baseDigest, func() *coin.Spend {
		a, _, _ := g.coinKey()
		return spendWith(g, base.coin, a, server, baseDigest, nil)
	}())

	faults, err := coinFaults(g, m, other, wl, base.coin, edScalar(base.key), server, otherServer)
	if err != nil {
		return nil, err
	}
	for _, f := range faults {
		d := digest()
		comment := f.comment + "; spend signature valid"
		if f.key == nil {
			comment = f.comment + "; spend signature is the identity and S = 0"
		}
		s := spendWith(g, f.coin, f.key, server, d, nil)
		inside.Tests = append(inside.Tests, spendTest(b.invalid(comment, f.flag), m, server, d, s.Bytes(), s, f.signer))
	}

	groups := []spendVerifyGroup{inside}
	window := func(t time.Time, w coin.Window, c testCase) {
		grp := group(t, w)
		grp.Tests = []spendVerifyTest{spendTest(c, m, server, baseDigest, enc, baseSpend, nil)}
		groups = append(groups, grp)
	}
	nb, su := time.Unix(ks.NotBefore, 0), time.Unix(ks.SpendUntil, 0)
	window(nb.Add(-time.Second), coin.WindowSpend, b.invalid("verified one second before not_before", "BeforeNotBefore"))
	window(su, coin.WindowSpend, b.invalid("verified at spend_until", "AtSpendUntil"))
	window(su, coin.WindowDeposit, b.valid("verified at spend_until in the deposit window", "DepositWindow"))

	return &file{
		name:      "spend_verify",
		algorithm: "scrip/v1 spend verification",
		header: slices.Concat(coinHeader, []string{
			"Spends checked by coin.Verifier{Keysets: the group's keyset, Server: server, Window: window}.VerifySpend(coin.ParseSpend(spend), digest, time); every spend of a group that parses is also checked in one VerifyBatch per server.",
			"spendSig is the coin key's Ed25519 signature over spendMsg = \"scrip/v1/spend\\x00\" || u16 len(server) || server || digest; the coin part is checked as in coin_verify_test.json.",
			"Specification: SPEC.md §5 (spends) and §6 (verification rule, single and batched).",
		}, tripleHeader, []string{
			"Every case also carries the triple (coinPublicKey, spendMsg, spendSig): the coin key and spend signature of the parsed spend or, for an encoding that does not parse, of the first valid case's spend it was derived from (made for the case's server and digest), and the spend message of the case's server and digest.",
			"Valid cases pass any RFC 8032 verifier on (coinPublicKey, spendMsg, spendSig) and (publicKey, msg, sig); acceptable ones fail the cofactorless check on the signature their flag names and pass it on the other.",
		}),
		groups: groups,
		b:      b,
	}, nil
}
