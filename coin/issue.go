package coin

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"time"

	"filippo.io/edwards25519"
)

// Signer is the mint's side of Clause Blind Schnorr issuance for one
// denomination key. It keeps no state between rounds: both commitments and
// the clause bit are derived from the keyset's nonce key, the denomination
// key and the client's nonce. See the package documentation for the duties of
// its caller.
type Signer struct {
	keyset   *Keyset
	keysetID [32]byte
	amount   uint64
	pub      [32]byte
	x        *edwards25519.Scalar
	nonceKey *[32]byte
}

// Signer returns the signer for amount, or an error wrapping [ErrAmount] if
// the keyset has no such denomination.
func (s *KeysetSecret) Signer(amount uint64) (*Signer, error) {
	x, ok := s.x[amount]
	if !ok {
		return nil, fmt.Errorf("%w: no denomination %d", ErrAmount, amount)
	}
	pub, _ := s.keyset.Key(amount)
	return &Signer{keyset: s.keyset, keysetID: s.keyset.id, amount: amount, pub: pub, x: x, nonceKey: &s.nonceKey}, nil
}

// Key returns the denomination's public key.
func (s *Signer) Key() [32]byte { return s.pub }

// rs derives the two commitment scalars for nonce.
func (s *Signer) rs(nonce *[32]byte) (r0, r1 *edwards25519.Scalar) {
	r0 = hashToScalar([]byte(tagMintR), s.nonceKey[:], s.pub[:], nonce[:], []byte{0})
	r1 = hashToScalar([]byte(tagMintR), s.nonceKey[:], s.pub[:], nonce[:], []byte{1})
	return
}

// Begin answers the first round: the commitments R0 = r0·B and R1 = r1·B for
// nonce. It may be called any number of times; it always gives the same
// answer for the same nonce.
func (s *Signer) Begin(nonce [32]byte) (r0, r1 [32]byte) {
	s0, s1 := s.rs(&nonce)
	copy(r0[:], new(edwards25519.Point).ScalarBaseMult(s0).Bytes())
	copy(r1[:], new(edwards25519.Point).ScalarBaseMult(s1).Bytes())
	return
}

// Row is what the mint must commit, under the unique key (Key, Nonce), before
// it releases the answer of [Signer.Finish]. It contains no secret that the
// client does not learn from the answer.
type Row struct {
	Key           [32]byte // denomination public key
	Nonce         [32]byte
	ChallengeHash [32]byte // SHA-256(tag || c0 || c1)
	B             uint8    // the clause signed, 0 or 1
	S             [32]byte // s = r_b + c_b·x
}

// Answer is the mint's reply to the second round.
type Answer struct {
	B uint8
	S [32]byte
}

// Answer returns the answer stored in the row.
func (r *Row) Answer() Answer { return Answer{B: r.B, S: r.S} }

// Matches reports whether the row was made for the challenges c0, c1. A retry
// may be answered from a stored row only if Matches returns true.
func (r *Row) Matches(c0, c1 [32]byte) bool {
	h := ChallengeHash(c0, c1)
	return subtle.ConstantTimeCompare(h[:], r.ChallengeHash[:]) == 1
}

// ChallengeHash returns SHA-256(tag || c0 || c1).
func ChallengeHash(c0, c1 [32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(tagChallenges))
	h.Write(c0[:])
	h.Write(c1[:])
	return [32]byte(h.Sum(nil))
}

// Finish computes the answer to the second round and returns it as a [Row].
//
// Finish is stateless: called twice for one nonce with different challenges,
// it returns two answers from which anyone can compute the denomination key.
// The caller MUST insert the row durably under the unique key (Key, Nonce)
// and release [Row.Answer] only after that insert commits; if a row already
// exists, it MUST release the stored row's answer if [Row.Matches] accepts
// the challenges and refuse otherwise, never the answer of this call.
//
// Finish refuses, with an error wrapping [ErrOutsideWindow], when now is
// outside the keyset's issue window: rows may be pruned after issue_until,
// so a replayed nonce must not be answered afresh then. The challenges must
// be canonical scalars; otherwise Finish returns an error wrapping
// [ErrMalformed].
func (s *Signer) Finish(now time.Time, nonce, c0, c1 [32]byte) (Row, error) {
	if !s.keyset.Open(WindowIssue, now) {
		return Row{}, fmt.Errorf("%w: issue window", ErrOutsideWindow)
	}
	sc0, err0 := edwards25519.NewScalar().SetCanonicalBytes(c0[:])
	sc1, err1 := edwards25519.NewScalar().SetCanonicalBytes(c1[:])
	if err0 != nil || err1 != nil {
		return Row{}, fmt.Errorf("%w: challenge is not a canonical scalar", ErrMalformed)
	}
	r0, r1 := s.rs(&nonce)
	bh := sha256.New()
	bh.Write([]byte(tagMintB))
	bh.Write(s.nonceKey[:])
	bh.Write(s.pub[:])
	bh.Write(nonce[:])
	b := bh.Sum(nil)[0] & 1

	// Select r_b and c_b without branching on b: v_b = v0 + b·(v1 − v0).
	var bb [32]byte
	bb[0] = b
	bs, _ := edwards25519.NewScalar().SetCanonicalBytes(bb[:])
	rb := edwards25519.NewScalar().Subtract(r1, r0)
	rb.MultiplyAdd(bs, rb, r0)
	cb := edwards25519.NewScalar().Subtract(sc1, sc0)
	cb.MultiplyAdd(bs, cb, sc0)
	sv := edwards25519.NewScalar().MultiplyAdd(cb, s.x, rb)

	row := Row{Key: s.pub, Nonce: nonce, ChallengeHash: ChallengeHash(c0, c1), B: b}
	copy(row.S[:], sv.Bytes())
	return row, nil
}

// Nonce returns the issuance nonce for counter i of the wallet seed.
func Nonce(seed *[32]byte, i uint64) [32]byte {
	h := sha256.New()
	h.Write([]byte(tagWalletNonce))
	h.Write(seed[:])
	h.Write(u64(i))
	return [32]byte(h.Sum(nil))
}

// Withdrawal is the client's side of issuing one coin. Everything in it is
// derived from the wallet seed and the counter, so a wallet restored from its
// seed can finish it again from the mint's stored answer.
type Withdrawal struct {
	ks         *Keyset
	amount     uint64
	key        [32]byte
	keyPoint   *edwards25519.Point
	designated [32]byte
	nonce      [32]byte
	seed       [32]byte
	coinKey    ed25519.PrivateKey
	coinPub    [32]byte
	root       [32]byte

	// Set by Challenges.
	r      [2][32]byte // the mint's commitments
	alpha  [2]*edwards25519.Scalar
	beta   [2]*edwards25519.Scalar
	rPrime [2][32]byte
	c      [2][32]byte
	ready  bool
}

// NewWithdrawal prepares the withdrawal of one coin of amount from keyset ks,
// using counter i of the wallet seed. designated is the coin's designation
// (see [Designation]), or zero for a bearer coin.
//
// The caller MUST persist that counter i is used before it sends the nonce,
// and MUST NOT call NewWithdrawal twice with one counter for different
// coins: the mint would refuse the second, or the same coin would come back.
func NewWithdrawal(seed *[32]byte, i uint64, ks *Keyset, amount uint64, designated [32]byte) (*Withdrawal, error) {
	key, ok := ks.Key(amount)
	if !ok {
		return nil, fmt.Errorf("%w: no denomination %d", ErrAmount, amount)
	}
	kp, _ := ks.point(amount)
	w := &Withdrawal{ks: ks, amount: amount, key: key, keyPoint: kp, designated: designated, seed: *seed}
	w.nonce = Nonce(seed, i)
	w.coinKey = CoinKey(seed, w.nonce, key)
	copy(w.coinPub[:], w.coinKey.Public().(ed25519.PublicKey))
	w.root = coinRoot(w.coinKey)
	return w, nil
}

// coinRoot returns q with [8]q equal to the public key of priv: the Ed25519
// secret scalar is clamped to a multiple of 8, so q = [a/8]B.
func coinRoot(priv ed25519.PrivateKey) [32]byte {
	h := sha512Sum(priv.Seed())
	a := h[:32]
	a[0] &= 248
	a[31] &= 127
	a[31] |= 64
	// a/8: shift the 256-bit little-endian integer right by 3.
	var q [32]byte
	for i := range 32 {
		q[i] = a[i] >> 3
		if i < 31 {
			q[i] |= a[i+1] << 5
		}
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(q[:])
	if err != nil {
		panic("coin: a/8 is not canonical")
	}
	var out [32]byte
	copy(out[:], new(edwards25519.Point).ScalarBaseMult(s).Bytes())
	return out
}

// Nonce returns the nonce to send to the mint.
func (w *Withdrawal) Nonce() [32]byte { return w.nonce }

// Amount returns the coin's amount.
func (w *Withdrawal) Amount() uint64 { return w.amount }

// message returns the coin message M of the coin being withdrawn.
func (w *Withdrawal) message() []byte {
	return coinMessage(w.ks.id, w.amount, w.coinPub, w.designated)
}

// Challenges checks the mint's commitments and returns the blinded
// challenges c0, c1 for the second round. It refuses commitments that are
// not canonical encodings of points of prime order (a mint could otherwise
// tag the coin through a torsion component) with an error wrapping
// [ErrBadKey].
//
// The blinding factors are derived from the seed, the nonce, the
// denomination key and both commitments, so a mint that answers round one
// twice with different commitments gets unrelated challenges and cannot link
// the coin through them. Once Challenges has succeeded, it refuses other
// commitments with [ErrBadKey] and returns the same challenges for the same
// ones. A wallet that may retry the second round must persist R0 and R1 (or
// c0 and c1) and send the same challenges again.
func (w *Withdrawal) Challenges(r0, r1 [32]byte) (c0, c1 [32]byte, err error) {
	if w.ready {
		if r0 != w.r[0] || r1 != w.r[1] {
			return c0, c1, fmt.Errorf("%w: the mint changed its commitments", ErrBadKey)
		}
		return w.c[0], w.c[1], nil
	}
	var rp [2]*edwards25519.Point
	for j, rb := range [2][32]byte{r0, r1} {
		p, err := decodePrimeOrder(rb[:])
		if err != nil {
			return c0, c1, fmt.Errorf("%w: mint commitment R%d", ErrBadKey, j)
		}
		rp[j] = p
	}
	msg := w.message()
	var alpha, beta [2]*edwards25519.Scalar
	var rPrime, c [2][32]byte
	for j := range 2 {
		alpha[j], beta[j] = blinding(&w.seed, &w.nonce, &w.key, &r0, &r1, j)
		// R'_j = R_j + α_j·B + β_j·A, in constant time: α and β are what
		// keeps the coin unlinkable.
		t := new(edwards25519.Point).ScalarBaseMult(alpha[j])
		t.Add(t, new(edwards25519.Point).ScalarMult(beta[j], w.keyPoint))
		t.Add(t, rp[j])
		copy(rPrime[j][:], t.Bytes())
		cj := challenge(rPrime[j][:], w.key[:], msg)
		cj.Add(cj, beta[j])
		copy(c[j][:], cj.Bytes())
	}
	w.r = [2][32]byte{r0, r1}
	w.alpha, w.beta, w.rPrime, w.c = alpha, beta, rPrime, c
	w.ready = true
	return c[0], c[1], nil
}

// blinding derives the blinding factors of clause j.
func blinding(seed, nonce, key, r0, r1 *[32]byte, j int) (alpha, beta *edwards25519.Scalar) {
	alpha = hashToScalar([]byte(tagWalletBlind), seed[:], nonce[:], key[:], r0[:], r1[:], []byte{byte(2 * j)})
	beta = hashToScalar([]byte(tagWalletBlind), seed[:], nonce[:], key[:], r0[:], r1[:], []byte{byte(2*j + 1)})
	return
}

// Finish unblinds the mint's answer into a coin. It keeps the coin only if
// the signature verifies under both this package's rule and the standard
// library's crypto/ed25519.Verify, and otherwise returns an error wrapping
// [ErrBadSignature].
func (w *Withdrawal) Finish(a Answer) (*Coin, error) {
	if !w.ready {
		return nil, fmt.Errorf("%w: Finish before Challenges", ErrMalformed)
	}
	if a.B > 1 {
		return nil, fmt.Errorf("%w: clause bit %d", ErrMalformed, a.B)
	}
	s, err := edwards25519.NewScalar().SetCanonicalBytes(a.S[:])
	if err != nil {
		return nil, fmt.Errorf("%w: answer is not a canonical scalar", ErrMalformed)
	}
	s.Add(s, w.alpha[a.B])
	c := &Coin{KeysetID: w.ks.id, Amount: w.amount, Pub: w.coinPub, Designated: w.designated, Root: w.root}
	copy(c.Sig[:32], w.rPrime[a.B][:])
	copy(c.Sig[32:], s.Bytes())
	msg := c.Message()
	if !ed25519.Verify(w.key[:], msg, c.Sig[:]) || verifySig(w.key[:], msg, c.Sig[:]) != nil {
		return nil, fmt.Errorf("%w: mint answer", ErrBadSignature)
	}
	return c, nil
}

// CoinKey returns the private key of the coin being withdrawn, which signs
// its spends. It is a secret of the wallet.
func (w *Withdrawal) CoinKey() ed25519.PrivateKey { return w.coinKey }

// CoinKey re-derives from the wallet seed the private key of the coin
// withdrawn with nonce under the denomination key denomKey.
func CoinKey(seed *[32]byte, nonce, denomKey [32]byte) ed25519.PrivateKey {
	h := sha256.New()
	h.Write([]byte(tagWalletCoin))
	h.Write(seed[:])
	h.Write(nonce[:])
	h.Write(denomKey[:])
	return ed25519.NewKeyFromSeed(h.Sum(nil))
}

// Transcript is every intermediate value of a withdrawal, for test vectors
// and audits of the wallet itself. The blinding factors link the coin to the
// mint's transcript: a Transcript must never leave the wallet.
type Transcript struct {
	Alpha0, Beta0, Alpha1, Beta1 [32]byte
	RPrime0, RPrime1             [32]byte
	C0, C1                       [32]byte
	CoinPub, CoinRoot            [32]byte
	Message                      []byte
}

// Transcript returns the withdrawal's intermediate values. The blinding
// factors, R' and c are zero until [Withdrawal.Challenges] has succeeded.
func (w *Withdrawal) Transcript() Transcript {
	t := Transcript{RPrime0: w.rPrime[0], RPrime1: w.rPrime[1], C0: w.c[0], C1: w.c[1],
		CoinPub: w.coinPub, CoinRoot: w.root, Message: w.message()}
	if w.ready {
		copy(t.Alpha0[:], w.alpha[0].Bytes())
		copy(t.Beta0[:], w.beta[0].Bytes())
		copy(t.Alpha1[:], w.alpha[1].Bytes())
		copy(t.Beta1[:], w.beta[1].Bytes())
	}
	return t
}

// Format redacts: a Withdrawal holds the coin key and the blinding factors.
func (w Withdrawal) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "coin.Withdrawal{amount: %d, nonce: %x}", w.amount, w.nonce[:4])
}

// Format redacts: a Signer holds a denomination's secret key.
func (s Signer) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "coin.Signer{amount: %d}", s.amount)
}
