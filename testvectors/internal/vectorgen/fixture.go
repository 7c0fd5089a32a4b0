package vectorgen

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"filippo.io/edwards25519"
	"github.com/scripnet/scrip/coin"
)

// mintFixture is a mint with one keyset, including the secret scalars, so
// the generator can sign coins that no honest issuance produces.
type mintFixture struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	ks   *coin.Keyset
	sec  *coin.KeysetSecret
	x    map[uint64]*edwards25519.Scalar
}

func newMint(g *rng, priv ed25519.PrivateKey, p coin.KeysetParams) (*mintFixture, error) {
	ks, sec, err := coin.GenerateKeyset(g, priv, p)
	if err != nil {
		return nil, err
	}
	if err := checkEncoding(priv, ks); err != nil {
		return nil, err
	}
	x, err := denominationScalars(sec)
	if err != nil {
		return nil, err
	}
	return &mintFixture{priv: priv, pub: priv.Public().(ed25519.PublicKey), ks: ks, sec: sec, x: x}, nil
}

func (m *mintFixture) key(amount uint64) []byte {
	k, ok := m.ks.Key(amount)
	if !ok {
		panic(fmt.Sprintf("vectorgen: no denomination %d", amount))
	}
	return k[:]
}

// sign replaces c's mint signature by one made with the key of amount (which
// need not be c.Amount), with torsion t added to R (nil for none).
func (m *mintFixture) sign(g *rng, c *coin.Coin, amount uint64, t *edwards25519.Point) {
	copy(c.Sig[:], g.sign(m.x[amount], m.key(amount), c.Message(), t))
}

// forge returns a coin of this keyset with the given fields, validly signed
// by the key of its amount.
func (m *mintFixture) forge(g *rng, amount uint64, pub, root, designated [32]byte) *coin.Coin {
	c := &coin.Coin{KeysetID: m.ks.ID(), Amount: amount, Pub: pub, Designated: designated, Root: root}
	m.sign(g, c, amount, nil)
	return c
}

// wallet withdraws coins through coin's own API.
type wallet struct {
	seed [32]byte
	next uint64
}

// issuance is one withdrawal through both rounds.
type issuance struct {
	counter uint64
	w       *coin.Withdrawal
	r0, r1  [32]byte
	c0, c1  [32]byte
	row     coin.Row
	coin    *coin.Coin
	key     ed25519.PrivateKey
}

// begin starts the withdrawal of the wallet's next counter and returns the
// mint's commitments.
func (wl *wallet) begin(m *mintFixture, amount uint64, designated [32]byte) (*issuance, error) {
	is := &issuance{counter: wl.next}
	wl.next++
	w, err := coin.NewWithdrawal(&wl.seed, is.counter, m.ks, amount, designated)
	if err != nil {
		return nil, err
	}
	signer, err := m.sec.Signer(amount)
	if err != nil {
		return nil, err
	}
	is.w = w
	is.r0, is.r1 = signer.Begin(w.Nonce())
	return is, nil
}

// withdraw runs both rounds for the wallet's next counter.
func (wl *wallet) withdraw(m *mintFixture, amount uint64, designated [32]byte) (*issuance, error) {
	is, err := wl.begin(m, amount, designated)
	if err != nil {
		return nil, err
	}
	if is.c0, is.c1, err = is.w.Challenges(is.r0, is.r1); err != nil {
		return nil, err
	}
	signer, _ := m.sec.Signer(amount)
	if is.row, err = signer.Finish(time.Unix(m.ks.NotBefore, 0), is.w.Nonce(), is.c0, is.c1); err != nil {
		return nil, err
	}
	if is.coin, err = is.w.Finish(is.row.Answer()); err != nil {
		return nil, err
	}
	is.key = is.w.CoinKey()
	return is, nil
}

// peerID returns a libp2p peer ID in binary form: the identity multihash of
// a protobuf-encoded Ed25519 public key.
func (g *rng) peerID() []byte {
	return cat([]byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}, g.bytes(32))
}
