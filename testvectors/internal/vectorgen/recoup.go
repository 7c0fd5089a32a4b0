package vectorgen

import (
	"fmt"
	"slices"

	"filippo.io/edwards25519"
	"github.com/scripnet/scrip/coin"
)

type recoupGroup struct {
	Keyset       hexBytes     `json:"keyset" desc:"the signed keyset, revoked by the mint"`
	MintKey      hexBytes     `json:"mintKey" hex:"32" desc:"the mint's Ed25519 identity key"`
	KeysetSecret hexBytes     `json:"keysetSecret" desc:"the mint's secret (coin.KeysetSecret.Bytes): u16 length || signed keyset || nonce key (32) || one scalar per denomination in keyset order; a test secret, given so a mint can be checked too"`
	Tests        []recoupTest `json:"tests"`
}

type recoupTest struct {
	testCase
	Seed             hexBytes `json:"seed,omitempty" hex:"32" desc:"wallet seed the proof is derived from; given exactly when the case checks the wallet side, coin.NewRecoupProof(seed, keyset, coin, nonce, R0, R1)"`
	Nonce            hexBytes `json:"nonce" hex:"32" desc:"the issuance nonce the proof names"`
	Amount           uint64   `json:"amount" desc:"the coin's amount"`
	KeysetID         hexBytes `json:"keysetId" hex:"32" desc:"the coin's keyset ID"`
	CoinPub          hexBytes `json:"coinPub" hex:"32" desc:"the coin's Ed25519 public key"`
	Designated       hexBytes `json:"designated" hex:"32" desc:"the coin's designation, zero for a bearer coin"`
	Msg              hexBytes `json:"msg" desc:"the coin message M of coin"`
	Coin             hexBytes `json:"coin" hex:"200" desc:"the coin presented for recoup"`
	PublicKey        hexBytes `json:"publicKey" hex:"32" desc:"denomination key A of the mint's row (publicKey, nonce), whose signer the mint recomputes with; the key of amount in every case but OtherDenomination and AmountNotInKeyset"`
	RowChallengeHash hexBytes `json:"rowChallengeHash" hex:"32" desc:"challenge hash stored in the mint's row (publicKey, nonce), as Restore returns it"`
	R0               hexBytes `json:"R0" hex:"32" desc:"mint commitment R_0 for (publicKey, nonce), as the wallet receives it from Restore"`
	R1               hexBytes `json:"R1" hex:"32" desc:"mint commitment R_1 for (publicKey, nonce), as the wallet receives it from Restore"`
	Alpha0           hexBytes `json:"alpha0,omitempty" hex:"32" desc:"revealed blinding factor alpha_0; given exactly when the case checks the mint side"`
	Beta0            hexBytes `json:"beta0,omitempty" hex:"32" desc:"revealed blinding factor beta_0; given exactly when the case checks the mint side"`
	Alpha1           hexBytes `json:"alpha1,omitempty" hex:"32" desc:"revealed blinding factor alpha_1; given exactly when the case checks the mint side"`
	Beta1            hexBytes `json:"beta1,omitempty" hex:"32" desc:"revealed blinding factor beta_1; given exactly when the case checks the mint side"`
	R0Prime          hexBytes `json:"R0prime,omitempty" hex:"32" desc:"R'_0 = R_0 + [alpha_0]B + [beta_0]A; absent when the case is refused with an error"`
	R1Prime          hexBytes `json:"R1prime,omitempty" hex:"32" desc:"R'_1 = R_1 + [alpha_1]B + [beta_1]A; absent when the case is refused with an error"`
	C0               hexBytes `json:"c0,omitempty" hex:"32" desc:"recomputed challenge c_0 = H512(R'_0 || A || msg) + beta_0; absent when the case is refused with an error"`
	C1               hexBytes `json:"c1,omitempty" hex:"32" desc:"recomputed challenge c_1 = H512(R'_1 || A || msg) + beta_1; absent when the case is refused with an error"`
	ChallengeHash    hexBytes `json:"challengeHash,omitempty" hex:"32" desc:"SHA-256(\"scrip/v1/challenges\\x00\" || c0 || c1), recomputed from the proof and the coin; equal to rowChallengeHash exactly in valid cases; absent when the case is refused with an error"`
}

// recoupRow is one issuance of the mint: the row (key, nonce) with its
// commitments and hash, the coin it gave, and the honest recoup proof.
type recoupRow struct {
	seed  [32]byte
	amt   uint64
	key   [32]byte
	nonce [32]byte
	r0    [32]byte
	r1    [32]byte
	hash  [32]byte
	coin  *coin.Coin
	proof coin.RecoupProof
}

// recoupIssue withdraws a coin and derives its recoup proof, checking that
// the proof reproduces the withdrawal's blinding factors and the row.
func recoupIssue(wl *wallet, m *mintFixture, amount uint64, designated [32]byte) (*recoupRow, error) {
	is, err := wl.withdraw(m, amount, designated)
	if err != nil {
		return nil, err
	}
	nonce := is.w.Nonce()
	r := &recoupRow{seed: wl.seed, amt: amount, key: [32]byte(m.key(amount)), nonce: nonce, r0: is.r0, r1: is.r1,
		hash: is.row.ChallengeHash, coin: is.coin}
	p, h, err := coin.NewRecoupProof(&wl.seed, m.ks, is.coin, nonce, is.r0, is.r1)
	if err != nil {
		return nil, err
	}
	tr := is.w.Transcript()
	if p.Nonce != nonce || p.Alpha != [2][32]byte{tr.Alpha0, tr.Alpha1} || p.Beta != [2][32]byte{tr.Beta0, tr.Beta1} || h != r.hash {
		return nil, fmt.Errorf("vectorgen: the recoup proof of nonce %x does not reproduce its withdrawal", nonce)
	}
	r.proof = p
	return r, nil
}

// recoupInput is what one case presents: the row, the coin, the proof the
// mint is shown (nil: mint side not checked) and the seed the wallet
// derives from (nil: wallet side not checked).
type recoupInput struct {
	row    *recoupRow
	nonce  [32]byte // the nonce the proof names; row.nonce unless changed
	r0, r1 [32]byte // as the wallet receives them
	coin   *coin.Coin
	proof  *coin.RecoupProof
	seed   *[32]byte
	values bool // the recomputed R'_j, c_j and challenge hash are given
}

// input returns the honest input of row: its coin, proof and seed.
func (r *recoupRow) input() recoupInput {
	p := r.proof
	seed := r.seed
	return recoupInput{row: r, nonce: r.nonce, r0: r.r0, r1: r.r1, coin: r.coin, proof: &p, seed: &seed, values: true}
}

// recoupValues computes R'_j = R_j + [alpha_j]B + [beta_j]A, c_j =
// H512(R'_j || A || msg) + beta_j and the challenge hash from a
// well-formed proof and good commitments.
func recoupValues(key, r0, r1 [32]byte, msg []byte, p *coin.RecoupProof) (rp, c [2][32]byte, h [32]byte, err error) {
	a := mustDecode(key[:])
	for j, rb := range [2][32]byte{r0, r1} {
		alpha, err1 := edwards25519.NewScalar().SetCanonicalBytes(p.Alpha[j][:])
		beta, err2 := edwards25519.NewScalar().SetCanonicalBytes(p.Beta[j][:])
		if err1 != nil || err2 != nil {
			return rp, c, h, fmt.Errorf("vectorgen: non-canonical blinding factor")
		}
		t := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(beta, a, alpha)
		t.Add(t, mustDecode(rb[:]))
		copy(rp[j][:], t.Bytes())
		cj := hram(rp[j][:], key[:], msg)
		cj.Add(cj, beta)
		copy(c[j][:], cj.Bytes())
	}
	return rp, c, coin.ChallengeHash(c[0], c[1]), nil
}

// recoupCase builds a case from in; match says whether the recomputed hash
// must equal the row's (checked here, so that no case says what it is not).
func recoupCase(c testCase, in recoupInput, match bool) (recoupTest, error) {
	// Every value is copied: the caller reuses its variables.
	row, cn := in.row, *in.coin
	t := recoupTest{
		testCase: c, Nonce: clone(in.nonce), Amount: cn.Amount, KeysetID: clone(cn.KeysetID),
		CoinPub: clone(cn.Pub), Designated: clone(cn.Designated), Msg: cn.Message(), Coin: cn.Bytes(),
		PublicKey: clone(row.key), RowChallengeHash: clone(row.hash), R0: clone(in.r0), R1: clone(in.r1),
	}
	if in.seed != nil {
		t.Seed = clone(*in.seed)
	}
	if p := in.proof; p != nil {
		if p.Nonce != in.nonce {
			return t, fmt.Errorf("vectorgen: tcId %d: proof names another nonce", c.TcID)
		}
		t.Alpha0, t.Beta0, t.Alpha1, t.Beta1 = clone(p.Alpha[0]), clone(p.Beta[0]), clone(p.Alpha[1]), clone(p.Beta[1])
	}
	if !in.values {
		return t, nil
	}
	rp, cc, h, err := recoupValues(row.key, in.r0, in.r1, cn.Message(), in.proof)
	if err != nil {
		return t, err
	}
	if (h == row.hash) != match {
		return t, fmt.Errorf("vectorgen: tcId %d: recomputed hash matches the row: %v, want %v", c.TcID, h == row.hash, match)
	}
	t.R0Prime, t.R1Prime, t.C0, t.C1, t.ChallengeHash = clone(rp[0]), clone(rp[1]), clone(cc[0]), clone(cc[1]), clone(h)
	return t, nil
}

// bearerOr says whether c is a bearer or a designated coin.
func bearerOr(c *coin.Coin) string {
	if c.Designated == [32]byte{} {
		return "bearer"
	}
	return "designated"
}

func clone(b [32]byte) hexBytes { return hexBytes(b[:]) }

// addOne returns the scalar s + 1 mod L of a canonical encoding.
func addOne(s [32]byte) [32]byte {
	x, err := edwards25519.NewScalar().SetCanonicalBytes(s[:])
	if err != nil {
		panic(err)
	}
	return [32]byte(x.Add(x, scalarFromUint(1)).Bytes())
}

func recoupFile() (*file, error) {
	g := newRNG("recoup")
	b := &builder{}
	m, err := newMint(g, g.edKey(), keysetParams("msat", 0, 1, 2, 3))
	if err != nil {
		return nil, err
	}
	// The next epoch's keyset, for a coin that names another keyset.
	next, err := newMint(g, m.priv, keysetParams("msat", 0, 1, 2, 3))
	if err != nil {
		return nil, err
	}
	wl := &wallet{seed: g.array32()}
	otherSeed := g.array32()
	thief := &wallet{seed: g.array32()}
	server := g.peerID()
	des := coin.Designation(server)
	grp := recoupGroup{Keyset: m.ks.Bytes(), MintKey: hexBytes(m.pub), KeysetSecret: m.sec.Bytes()}
	add := func(c testCase, in recoupInput, match bool) error {
		t, err := recoupCase(c, in, match)
		if err != nil {
			return err
		}
		grp.Tests = append(grp.Tests, t)
		return nil
	}

	// Valid: bearer and designated coins of every denomination.
	var rows []*recoupRow
	for i := range 8 {
		amount := uint64(1) << (i % 4)
		var d [32]byte
		comment, flag := fmt.Sprintf("bearer coin of %d msat", amount), "Bearer"
		if i >= 4 {
			d = des
			comment, flag = fmt.Sprintf("coin of %d msat designated to server %x", amount, server), "Designated"
		}
		r, err := recoupIssue(wl, m, amount, d)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
		if err := add(b.valid(comment+"; its proof gives the row's hash", flag), r.input(), true); err != nil {
			return nil, err
		}
	}
	// Two more coins of the wallet, for proofs presented with another coin.
	extra2, err := recoupIssue(wl, m, 2, [32]byte{})
	if err != nil {
		return nil, err
	}
	extra4, err := recoupIssue(wl, m, 4, des)
	if err != nil {
		return nil, err
	}

	// The wallet refuses commitments that are not canonical encodings of
	// points of prime order, before it derives anything from them.
	tor := torsion()
	plus := func(r [32]byte, t *edwards25519.Point) [32]byte {
		return [32]byte(new(edwards25519.Point).Add(mustDecode(r[:]), t).Bytes())
	}
	badR := []struct {
		row     int
		which   int
		flag    string
		comment string
		mod     func(r [32]byte) [32]byte
	}{
		{0, 0, "TorsionCommitment", "R0 plus a point of order 8", func(r [32]byte) [32]byte { return plus(r, tor[1]) }},
		{5, 1, "TorsionCommitment", "R1 plus the point of order 2", func(r [32]byte) [32]byte { return plus(r, tor[4]) }},
		{2, 0, "SmallOrderCommitment", "R0 is a point of order 4", func([32]byte) [32]byte { return [32]byte(tor[2].Bytes()) }},
		{3, 1, "IdentityCommitment", "R1 is the identity", func([32]byte) [32]byte { return [32]byte(identity.Bytes()) }},
		{4, 0, "NonCanonicalCommitment", "R0 is y = 1 + p, a non-canonical identity", func([32]byte) [32]byte { return [32]byte(nonCanonical(1, false)) }},
		{6, 1, "NonCanonicalCommitment", "R1 is y = p - 1 with the sign bit set", func([32]byte) [32]byte { return [32]byte(withSign(tor[4].Bytes())) }},
		{7, 0, "CommitmentNotOnCurve", "R0 is not a curve point", func([32]byte) [32]byte { return [32]byte(notOnCurve()) }},
	}
	for _, br := range badR {
		in := rows[br.row].input()
		if br.which == 0 {
			in.r0 = br.mod(in.r0)
		} else {
			in.r1 = br.mod(in.r1)
		}
		in.proof, in.values = nil, false
		if err := add(b.invalid(br.comment+", as Restore returns it; the wallet refuses it", br.flag), in, false); err != nil {
			return nil, err
		}
	}

	// The mint refuses blinding factors that are not canonical scalars.
	badFactor := []struct {
		row     int
		comment string
		mod     func(p *coin.RecoupProof)
	}{
		{0, "alpha0 + L", func(p *coin.RecoupProof) { p.Alpha[0] = [32]byte(addL(p.Alpha[0][:])) }},
		{1, "beta0 + L", func(p *coin.RecoupProof) { p.Beta[0] = [32]byte(addL(p.Beta[0][:])) }},
		{6, "alpha1 + L", func(p *coin.RecoupProof) { p.Alpha[1] = [32]byte(addL(p.Alpha[1][:])) }},
		{7, "beta1 + L", func(p *coin.RecoupProof) { p.Beta[1] = [32]byte(addL(p.Beta[1][:])) }},
		{3, "alpha1 = 2^256 - 1", func(p *coin.RecoupProof) { p.Alpha[1] = [32]byte(slices.Repeat([]byte{0xff}, 32)) }},
	}
	for _, bf := range badFactor {
		in := rows[bf.row].input()
		bf.mod(in.proof)
		in.seed, in.values = nil, false
		if err := add(b.invalid("the proof reveals "+bf.comment+", not a canonical scalar", "NonCanonicalFactor"), in, false); err != nil {
			return nil, err
		}
	}

	// Coins that are not of the row's denomination.
	for _, od := range []struct{ row, coin int }{{2, 3}, {5, 4}} {
		in := rows[od.row].input()
		in.coin, in.seed, in.values = rows[od.coin].coin, nil, false
		comment := fmt.Sprintf("a coin of %d msat with the proof of a row of %d msat; the mint's signer refuses it", in.coin.Amount, in.row.amt)
		if err := add(b.invalid(comment, "OtherDenomination"), in, false); err != nil {
			return nil, err
		}
	}
	for _, na := range []struct {
		row    int
		amount uint64
	}{{0, 16}, {7, 1 << 63}} {
		in := rows[na.row].input()
		cn := *in.coin
		cn.Amount = na.amount
		in.coin, in.values = &cn, false
		comment := fmt.Sprintf("the coin of the row of %d msat claims %d msat, which the keyset does not offer", in.row.amt, na.amount)
		if err := add(b.invalid(comment, "AmountNotInKeyset"), in, false); err != nil {
			return nil, err
		}
	}
	{
		in := rows[1].input()
		cn := *in.coin
		cn.KeysetID = next.ks.ID()
		in.coin, in.values = &cn, false
		if err := add(b.invalid("the coin of the row names the mint's next keyset", "CoinOfOtherKeyset"), in, false); err != nil {
			return nil, err
		}
	}

	// Well-formed proofs whose hash is not the row's.
	for _, r := range []*recoupRow{rows[0], rows[5]} {
		in := r.input()
		p, h, err := coin.NewRecoupProof(&otherSeed, m.ks, r.coin, r.nonce, r.r0, r.r1)
		if err != nil {
			return nil, err
		}
		if h == r.hash {
			return nil, fmt.Errorf("vectorgen: another seed's proof matches")
		}
		in.proof, in.seed = &p, &otherSeed
		comment := fmt.Sprintf("factors derived from another seed for the coin of the row of %d msat (%s)", r.amt, bearerOr(r.coin))
		if err := add(b.invalid(comment, "OtherSeed"), in, false); err != nil {
			return nil, err
		}
	}
	modFactor := []struct {
		row     int
		comment string
		mod     func(p *coin.RecoupProof)
	}{
		{1, "alpha0 + 1", func(p *coin.RecoupProof) { p.Alpha[0] = addOne(p.Alpha[0]) }},
		{2, "beta0 + 1", func(p *coin.RecoupProof) { p.Beta[0] = addOne(p.Beta[0]) }},
		{6, "alpha1 + 1", func(p *coin.RecoupProof) { p.Alpha[1] = addOne(p.Alpha[1]) }},
		{7, "beta1 + 1", func(p *coin.RecoupProof) { p.Beta[1] = addOne(p.Beta[1]) }},
		{4, "the factors of the two clauses swapped", func(p *coin.RecoupProof) {
			p.Alpha[0], p.Alpha[1], p.Beta[0], p.Beta[1] = p.Alpha[1], p.Alpha[0], p.Beta[1], p.Beta[0]
		}},
	}
	for _, mf := range modFactor {
		in := rows[mf.row].input()
		mf.mod(in.proof)
		in.seed = nil
		if err := add(b.invalid("the proof reveals "+mf.comment, "ModifiedFactor"), in, false); err != nil {
			return nil, err
		}
	}
	{
		// The factors of row 0 under the nonce of row 4 (same denomination):
		// the mint recomputes that row's commitments.
		in := rows[4].input()
		p := rows[0].proof
		p.Nonce = rows[4].nonce
		in.coin, in.proof, in.seed = rows[0].coin, &p, nil
		if err := add(b.invalid("the coin's factors revealed under the nonce of another row of its denomination", "OtherNonce"), in, false); err != nil {
			return nil, err
		}
		// The wallet names the nonce of another of its coins: it derives
		// that withdrawal's factors, which do not fit this coin.
		in = rows[4].input()
		wp, h, err := coin.NewRecoupProof(&wl.seed, m.ks, rows[0].coin, rows[4].nonce, rows[4].r0, rows[4].r1)
		if err != nil {
			return nil, err
		}
		if wp != rows[4].proof || h == rows[4].hash {
			return nil, fmt.Errorf("vectorgen: the proof under another nonce is not that withdrawal's")
		}
		in.coin, in.proof = rows[0].coin, &wp
		if err := add(b.invalid("the wallet derives the proof of the coin under the nonce of another of its coins", "OtherNonce"), in, false); err != nil {
			return nil, err
		}
	}
	for _, oc := range []struct {
		row   int
		other *recoupRow
	}{{1, extra2}, {6, extra4}} {
		in := rows[oc.row].input()
		in.coin = oc.other.coin
		comment := fmt.Sprintf("the proof of a row of %d msat (%s) with another coin of the wallet of the same amount and designation", oc.other.amt, bearerOr(oc.other.coin))
		if err := add(b.invalid(comment, "OtherCoinKey"), in, false); err != nil {
			return nil, err
		}
	}
	for _, od := range []struct {
		row int
		des [32]byte
		to  string
	}{{2, des, "designated to the server"}, {7, [32]byte{}, "bearer"}} {
		in := rows[od.row].input()
		cn := *in.coin
		cn.Designated = od.des
		in.coin = &cn
		if err := add(b.invalid("the coin of the row presented as "+od.to+" (its signature no longer verifies)", "OtherDesignation"), in, false); err != nil {
			return nil, err
		}
	}
	for _, fc := range []struct {
		amount uint64
		des    [32]byte
	}{{8, [32]byte{}}, {2, des}} {
		// A thief with the denomination key withdraws a coin, then signs a
		// coin key of its own: no row of the mint matches the forgery,
		// not even the thief's.
		r, err := recoupIssue(thief, m, fc.amount, fc.des)
		if err != nil {
			return nil, err
		}
		_, pub, root := g.coinKey()
		forged := m.forge(g, fc.amount, pub, root, fc.des)
		in := r.input()
		p, h, err := coin.NewRecoupProof(&thief.seed, m.ks, forged, r.nonce, r.r0, r.r1)
		if err != nil {
			return nil, err
		}
		if p != r.proof || h == r.hash {
			return nil, fmt.Errorf("vectorgen: the forged coin's proof is not the thief's withdrawal's")
		}
		in.coin, in.proof = forged, &p
		comment := fmt.Sprintf("a coin of %d msat (%s) signed with the stolen denomination key, with the proof of the thief's own withdrawal", fc.amount, bearerOr(forged))
		if err := add(b.invalid(comment, "ForgedCoin"), in, false); err != nil {
			return nil, err
		}
	}

	return &file{
		name:      "recoup",
		algorithm: "scrip/v1 recoup proofs",
		header: slices.Concat(coinHeader, []string{
			"Recoup proofs of coins of a revoked keyset: the wallet side coin.NewRecoupProof(seed, keyset, coin, nonce, R0, R1) and the mint side Signer.RecoupHash(coin, proof), with the signer of publicKey made from keysetSecret. Specification: SPEC.md §9 Recoup and §3.",
			"Tags are ASCII followed by one zero byte; H512(...) is SHA-512 reduced mod L; || is concatenation; A is publicKey; B the base point.",
			"Each case names the mint's row (publicKey, nonce) and the rowChallengeHash it holds, and the coin presented: coin, with its fields keysetId, amount, coinPub and designated and its message msg = \"scrip/v1/coin\\x00\" || keysetId || u64 amount || coinPub || designated.",
			"Mint: r_j = H512(\"scrip/v1/mint-r\\x00\" || nonceKey || A || nonce || byte(j)), R_j = [r_j]B. Wallet: alpha_j = H512(\"scrip/v1/wallet-blind\\x00\" || seed || nonce || A || R0 || R1 || byte(2j)), beta_j the same with byte(2j+1), A the key of the coin's amount. Both: R'_j = R_j + [alpha_j]B + [beta_j]A; c_j = H512(R'_j || A || msg) + beta_j; challengeHash = SHA-256(\"scrip/v1/challenges\\x00\" || c0 || c1).",
			"Wallet side, checked when seed is given: NewRecoupProof must refuse with the case's error, or else return the proof (nonce, alpha0, beta0, alpha1, beta1) and challengeHash of the case. The wallet sends the proof only if challengeHash equals rowChallengeHash.",
			"Mint side, checked when alpha0, beta0, alpha1 and beta1 are given: the mint recomputes R0 and R1 from nonce (they equal the case's), then RecoupHash must refuse with the case's error, or else return challengeHash. The mint recoups the coin only if challengeHash equals rowChallengeHash.",
			"A valid case checks both sides, and challengeHash = rowChallengeHash. A case whose flag is HashMismatch in the notes gives every value: the proof is well-formed, and challengeHash differs from rowChallengeHash. A case refused with an error stops at its fault: R0prime, R1prime, c0, c1 and challengeHash are absent; a bad commitment (flags ending in Commitment) is refused by the wallet before it derives the factors, so it has none either, and checks the wallet side only; NonCanonicalFactor, OtherDenomination, ModifiedFactor and the OtherNonce case without seed check the mint side only.",
			"R0 and R1 are the mint's commitments for (publicKey, nonce), except in the Commitment cases, where they are what a lying Restore returned.",
			"Recoup does not check the coin's signatures; the mint checks them apart, as for any spend. The coins of valid and ForgedCoin cases verify under the keyset (any designation, deposit window at not_before); the coins of other invalid cases need not.",
		}),
		groups: []recoupGroup{grp},
		b:      b,
	}, nil
}
