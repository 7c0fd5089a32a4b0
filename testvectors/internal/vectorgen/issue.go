package vectorgen

import (
	"fmt"
	"slices"

	"filippo.io/edwards25519"
	"github.com/scripnet/scrip/coin"
)

type issueGroup struct {
	Keyset       hexBytes    `json:"keyset" desc:"the signed keyset"`
	MintKey      hexBytes    `json:"mintKey" hex:"32" desc:"the mint's Ed25519 identity key"`
	KeysetSecret hexBytes    `json:"keysetSecret" desc:"the mint's secret (coin.KeysetSecret.Bytes): u16 length || signed keyset || nonce key (32) || one scalar per denomination in keyset order; a test secret, given so a mint can be checked too"`
	Tests        []issueTest `json:"tests"`
}

type issueTest struct {
	testCase
	Seed          hexBytes `json:"seed" hex:"32" desc:"wallet seed"`
	Counter       uint64   `json:"counter" desc:"wallet counter i"`
	Nonce         hexBytes `json:"nonce" hex:"32" desc:"issuance nonce derived from seed and counter"`
	Amount        uint64   `json:"amount" desc:"amount of the coin, a denomination of the keyset"`
	KeysetID      hexBytes `json:"keysetId" hex:"32" desc:"ID of the group's keyset"`
	PublicKey     hexBytes `json:"publicKey" hex:"32" desc:"denomination key A of amount"`
	Designated    hexBytes `json:"designated" hex:"32" desc:"designation of the coin, zero for a bearer coin"`
	CoinPub       hexBytes `json:"coinPub" hex:"32" desc:"the coin's Ed25519 public key"`
	CoinRoot      hexBytes `json:"coinRoot" hex:"32" desc:"root q of the coin key, [8]q = coinPub"`
	Msg           hexBytes `json:"msg" desc:"coin message M"`
	R0            hexBytes `json:"R0" hex:"32" desc:"mint commitment R_0 as the client receives it"`
	R1            hexBytes `json:"R1" hex:"32" desc:"mint commitment R_1 as the client receives it"`
	Alpha0        hexBytes `json:"alpha0,omitempty" hex:"32" desc:"blinding scalar alpha_0; given in every valid case, absent when the client refused R0 or R1"`
	Beta0         hexBytes `json:"beta0,omitempty" hex:"32" desc:"blinding scalar beta_0; given in every valid case, absent when the client refused R0 or R1"`
	Alpha1        hexBytes `json:"alpha1,omitempty" hex:"32" desc:"blinding scalar alpha_1; given in every valid case, absent when the client refused R0 or R1"`
	Beta1         hexBytes `json:"beta1,omitempty" hex:"32" desc:"blinding scalar beta_1; given in every valid case, absent when the client refused R0 or R1"`
	R0Prime       hexBytes `json:"R0prime,omitempty" hex:"32" desc:"blinded commitment R'_0; given in every valid case, absent when the client refused R0 or R1"`
	R1Prime       hexBytes `json:"R1prime,omitempty" hex:"32" desc:"blinded commitment R'_1; given in every valid case, absent when the client refused R0 or R1"`
	C0            hexBytes `json:"c0,omitempty" hex:"32" desc:"blinded challenge c_0 sent to the mint; given in every valid case, absent when the client refused R0 or R1"`
	C1            hexBytes `json:"c1,omitempty" hex:"32" desc:"blinded challenge c_1 sent to the mint; given in every valid case, absent when the client refused R0 or R1"`
	ChallengeHash hexBytes `json:"challengeHash,omitempty" hex:"32" desc:"what the mint stores to match retries; given in every valid case, absent when the client refused R0 or R1"`
	B             *uint8   `json:"b,omitempty" desc:"the clause the mint signed, as the client receives it; given in every valid case, absent when the client refused R0 or R1"`
	S             hexBytes `json:"s,omitempty" hex:"32" desc:"the mint's answer s as the client receives it; given in every valid case, absent when the client refused R0 or R1"`
	Sig           hexBytes `json:"sig,omitempty" hex:"64" desc:"the unblinded Ed25519 signature of msg under publicKey; given exactly for valid cases"`
	Coin          hexBytes `json:"coin,omitempty" hex:"200" desc:"the resulting coin encoding; given exactly for valid cases"`
}

// issueCase fills the fields that do not depend on the mint's answers.
func issueCase(c testCase, wl *wallet, m *mintFixture, is *issuance, r0, r1 []byte) issueTest {
	w := is.w
	tr := w.Transcript()
	nonce := w.Nonce()
	id := m.ks.ID()
	des := tr.Message[len(tr.Message)-32:]
	return issueTest{
		testCase: c, Seed: wl.seed[:], Counter: is.counter, Nonce: nonce[:], Amount: w.Amount(),
		KeysetID: id[:], PublicKey: m.key(w.Amount()), Designated: des,
		CoinPub: tr.CoinPub[:], CoinRoot: tr.CoinRoot[:], Msg: tr.Message,
		R0: r0, R1: r1,
	}
}

// withChallenges adds the client's second-round values.
func withChallenges(t issueTest, is *issuance, b uint8, s []byte) issueTest {
	tr := is.w.Transcript()
	h := coin.ChallengeHash(tr.C0, tr.C1)
	t.Alpha0, t.Beta0, t.Alpha1, t.Beta1 = tr.Alpha0[:], tr.Beta0[:], tr.Alpha1[:], tr.Beta1[:]
	t.R0Prime, t.R1Prime = tr.RPrime0[:], tr.RPrime1[:]
	t.C0, t.C1, t.ChallengeHash = tr.C0[:], tr.C1[:], h[:]
	t.B, t.S = &b, s
	return t
}

func issueFile() (*file, error) {
	g := newRNG("coin_issue")
	b := &builder{}
	m, err := newMint(g, g.edKey(), keysetParams("msat", 0, 1, 2, 3))
	if err != nil {
		return nil, err
	}
	wl := &wallet{seed: g.array32()}
	server := g.peerID()
	grp := issueGroup{Keyset: m.ks.Bytes(), MintKey: hexBytes(m.pub), KeysetSecret: m.sec.Bytes()}

	var clauses [2]int
	for i := range 8 {
		amount := uint64(1) << (i % 4)
		var des [32]byte
		comment, flag := fmt.Sprintf("bearer coin of %d msat", amount), "Bearer"
		if i%3 == 2 {
			des = coin.Designation(server)
			comment, flag = fmt.Sprintf("coin of %d msat designated to server %x", amount, server), "Designated"
		}
		c := b.valid(comment, flag)
		is, err := wl.withdraw(m, amount, des)
		if err != nil {
			return nil, err
		}
		t := issueCase(c, wl, m, is, is.r0[:], is.r1[:])
		t = withChallenges(t, is, is.row.B, is.row.S[:])
		t.Sig, t.Coin = is.coin.Sig[:], is.coin.Bytes()
		grp.Tests = append(grp.Tests, t)
		clauses[is.row.B]++
	}
	if clauses[0] == 0 || clauses[1] == 0 {
		return nil, fmt.Errorf("issuance vectors use only one clause: %v", clauses)
	}

	// The client must refuse commitments that are not canonical encodings
	// of points of prime order.
	tor := torsion()
	badR := []struct {
		which   int
		flag    string
		comment string
		mod     func(r [32]byte) []byte
	}{
		{0, "TorsionCommitment", "R0 plus a point of order 8", func(r [32]byte) []byte { return mustDecode(r[:]).Add(mustDecode(r[:]), tor[1]).Bytes() }},
		{1, "TorsionCommitment", "R1 plus a point of order 8", func(r [32]byte) []byte { return mustDecode(r[:]).Add(mustDecode(r[:]), tor[1]).Bytes() }},
		{0, "TorsionCommitment", "R0 plus the point of order 2", func(r [32]byte) []byte { return mustDecode(r[:]).Add(mustDecode(r[:]), tor[4]).Bytes() }},
		{1, "TorsionCommitment", "R1 plus a point of order 4", func(r [32]byte) []byte { return mustDecode(r[:]).Add(mustDecode(r[:]), tor[2]).Bytes() }},
		{0, "SmallOrderCommitment", "R0 is a point of order 8", func([32]byte) []byte { return tor[3].Bytes() }},
		{1, "SmallOrderCommitment", "R1 is the point of order 2", func([32]byte) []byte { return tor[4].Bytes() }},
		{0, "IdentityCommitment", "R0 is the identity", func([32]byte) []byte { return identity.Bytes() }},
		{1, "IdentityCommitment", "R1 is the identity", func([32]byte) []byte { return identity.Bytes() }},
		{0, "NonCanonicalCommitment", "R0 is y = 1 + p, a non-canonical identity", func([32]byte) []byte { return nonCanonical(1, false) }},
		{1, "NonCanonicalCommitment", "R1 is y = 3 + p, a non-canonical mixed-order point", func([32]byte) []byte { return nonCanonical(3, false) }},
		{0, "NonCanonicalCommitment", "R0 is y = p - 1 with the sign bit set", func([32]byte) []byte { return withSign(tor[4].Bytes()) }},
		{1, "CommitmentNotOnCurve", "R1 is not a curve point", func([32]byte) []byte { return notOnCurve() }},
	}
	for i, br := range badR {
		is, err := wl.begin(m, uint64(1)<<(i%4), [32]byte{})
		if err != nil {
			return nil, err
		}
		r0, r1 := is.r0[:], is.r1[:]
		if br.which == 0 {
			r0 = br.mod(is.r0)
		} else {
			r1 = br.mod(is.r1)
		}
		grp.Tests = append(grp.Tests, issueCase(b.invalid(br.comment+"; the client refuses it", br.flag), wl, m, is, r0, r1))
	}

	// The client must refuse answers that do not unblind to a valid
	// signature.
	badAnswer := []struct {
		flag    string
		comment string
		mod     func(row coin.Row) (uint8, []byte)
	}{
		{"ModifiedAnswer", "s + 1", func(row coin.Row) (uint8, []byte) {
			s, _ := edwards25519.NewScalar().SetCanonicalBytes(row.S[:])
			return row.B, s.Add(s, scalarFromUint(1)).Bytes()
		}},
		{"ModifiedAnswer", "s = 0", func(row coin.Row) (uint8, []byte) { return row.B, make([]byte, 32) }},
		{"WrongClause", "the other clause bit with the same s", func(row coin.Row) (uint8, []byte) { return 1 - row.B, row.S[:] }},
		{"NonCanonicalAnswer", "s + L instead of s", func(row coin.Row) (uint8, []byte) { return row.B, addL(row.S[:]) }},
		{"BadClauseBit", "clause bit 2", func(row coin.Row) (uint8, []byte) { return 2, row.S[:] }},
	}
	for i, ba := range badAnswer {
		is, err := wl.withdraw(m, uint64(1)<<(i%4), [32]byte{})
		if err != nil {
			return nil, err
		}
		bb, s := ba.mod(is.row)
		t := issueCase(b.invalid("mint answers "+ba.comment+"; the client refuses it", ba.flag), wl, m, is, is.r0[:], is.r1[:])
		grp.Tests = append(grp.Tests, withChallenges(t, is, bb, s))
	}

	return &file{
		name:      "coin_issue",
		algorithm: "scrip/v1 Clause Blind Schnorr issuance",
		header: slices.Concat(coinHeader, []string{
			"Issuance transcripts: coin.NewWithdrawal(seed, counter, keyset, amount, designated), Withdrawal.Challenges(R0, R1), Withdrawal.Finish(b, s).",
			"Tags are ASCII followed by one zero byte; H512(...) is SHA-512 reduced mod L; || is concatenation; A is publicKey; B the base point.",
			"nonce = SHA-256(\"scrip/v1/wallet-nonce\\x00\" || seed || u64 counter); alpha_j = H512(\"scrip/v1/wallet-blind\\x00\" || seed || nonce || A || R0 || R1 || byte(2j)); beta_j the same with byte(2j+1). The blinding factors depend on R0 and R1 as received, so they exist only once the client has accepted both.",
			"The coin key is the Ed25519 key with seed SHA-256(\"scrip/v1/wallet-coin\\x00\" || seed || nonce || A); with a its clamped secret scalar, coinRoot = [a/8]B.",
			"msg = \"scrip/v1/coin\\x00\" || keysetId || u64 amount || coinPub || designated.",
			"Mint, with nonceKey from keysetSecret: r_j = H512(\"scrip/v1/mint-r\\x00\" || nonceKey || A || nonce || byte(j)), R_j = [r_j]B; b = SHA-256(\"scrip/v1/mint-b\\x00\" || nonceKey || A || nonce)[0] & 1; s = r_b + c_b x.",
			"Client: R'_j = R_j + [alpha_j]B + [beta_j]A; c_j = H512(R'_j || A || msg) + beta_j; challengeHash = SHA-256(\"scrip/v1/challenges\\x00\" || c0 || c1); sig = R'_b || (s + alpha_b).",
			"Specification: SPEC.md §3.",
			"Every valid case carries the whole transcript: publicKey, msg, R0, R1, alpha0, beta0, alpha1, beta1, R0prime, R1prime, c0, c1, challengeHash, b, s, sig and coin.",
			"Invalid cases carry the transcript up to the faulty value and nothing after it. A bad commitment (flags ending in Commitment) fails Challenges: the client refuses R0 or R1 before deriving anything from them, so alpha0, beta0, alpha1, beta1, R0prime, R1prime, c0, c1, challengeHash, b, s, sig and coin are absent. A bad answer (ModifiedAnswer, WrongClause, NonCanonicalAnswer, BadClauseBit) fails Finish: every field up to b and s is given, sig and coin are absent.",
		}),
		groups: []issueGroup{grp},
		b:      b,
	}, nil
}
