package coin

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
)

// Encoding sizes.
const (
	// CoinSize is the length of an encoded [Coin].
	CoinSize = IDSize + 8 + PointSize + 32 + SignatureSize + PointSize
	// SpendSize is the length of an encoded [Spend].
	SpendSize = CoinSize + SignatureSize
	// MaxServerIDLen bounds the server peer ID in a spend message.
	MaxServerIDLen = 256
)

// Coin is a mint's blind signature on a coin key. Designated is
// SHA-256(tag || server peer ID) for a coin only that server accepts, or zero
// for a bearer coin. Root is a point q with [8]q = Pub, which proves that Pub
// is of prime order at the cost of one point decoding (see SPEC.md). The zero
// Coin is not valid.
type Coin struct {
	KeysetID   [32]byte
	Amount     uint64
	Pub        [32]byte // the coin's Ed25519 public key
	Designated [32]byte
	Sig        [64]byte // mint's Ed25519 signature over Message()
	Root       [32]byte
}

// Message returns the coin message M that the mint signed:
// tag || keyset ID || amount (u64) || coin public key || designation.
func (c *Coin) Message() []byte {
	return coinMessage(c.KeysetID, c.Amount, c.Pub, c.Designated)
}

func coinMessage(id [32]byte, amount uint64, pub, designated [32]byte) []byte {
	b := make([]byte, 0, len(tagCoin)+32+8+32+32)
	b = append(b, tagCoin...)
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint64(b, amount)
	b = append(b, pub[:]...)
	return append(b, designated[:]...)
}

// Bytes returns the canonical encoding: keyset ID, amount (u64), public key,
// designation, signature, root; [CoinSize] bytes.
func (c *Coin) Bytes() []byte {
	return c.appendTo(make([]byte, 0, CoinSize))
}

func (c *Coin) appendTo(b []byte) []byte {
	b = append(b, c.KeysetID[:]...)
	b = binary.BigEndian.AppendUint64(b, c.Amount)
	b = append(b, c.Pub[:]...)
	b = append(b, c.Designated[:]...)
	b = append(b, c.Sig[:]...)
	return append(b, c.Root[:]...)
}

// ParseCoin decodes a coin of exactly [CoinSize] bytes. It checks only the
// length and that the amount is a power of two; use a [Verifier] to check
// the coin.
func ParseCoin(b []byte) (*Coin, error) {
	if len(b) != CoinSize {
		return nil, fmt.Errorf("%w: coin is %d bytes, want %d", ErrMalformed, len(b), CoinSize)
	}
	c := new(Coin)
	c.parse(b)
	if c.Amount == 0 || c.Amount&(c.Amount-1) != 0 {
		return nil, fmt.Errorf("%w: amount is not a power of two", ErrMalformed)
	}
	return c, nil
}

func (c *Coin) parse(b []byte) {
	r := reader{b: b}
	copy(c.KeysetID[:], r.bytes(32))
	c.Amount = r.u64()
	copy(c.Pub[:], r.bytes(32))
	copy(c.Designated[:], r.bytes(32))
	copy(c.Sig[:], r.bytes(64))
	copy(c.Root[:], r.bytes(32))
}

// Spend is a coin offered to one server for one request: SpendSig is the
// coin key's Ed25519 signature over [SpendMessage](server, digest).
type Spend struct {
	Coin
	SpendSig [64]byte
}

// Bytes returns the canonical encoding: the coin's encoding followed by the
// spend signature; [SpendSize] bytes.
func (s *Spend) Bytes() []byte {
	b := s.Coin.appendTo(make([]byte, 0, SpendSize))
	return append(b, s.SpendSig[:]...)
}

// ParseSpend decodes a spend of exactly [SpendSize] bytes, with the same
// checks as [ParseCoin].
func ParseSpend(b []byte) (*Spend, error) {
	if len(b) != SpendSize {
		return nil, fmt.Errorf("%w: spend is %d bytes, want %d", ErrMalformed, len(b), SpendSize)
	}
	c, err := ParseCoin(b[:CoinSize])
	if err != nil {
		return nil, err
	}
	s := &Spend{Coin: *c}
	copy(s.SpendSig[:], b[CoinSize:])
	return s, nil
}

// SpendMessage returns the message a coin key signs to spend the coin at
// server for the request with the given digest:
// tag || len(server) (u16) || server || digest. server must be at most
// [MaxServerIDLen] bytes; SpendMessage panics on a longer one, which
// [NewSpend] and [Verifier] refuse before they get here.
func SpendMessage(server []byte, digest [32]byte) []byte {
	if len(server) > MaxServerIDLen {
		panic("coin: server ID too long")
	}
	b := make([]byte, 0, len(tagSpend)+2+len(server)+32)
	b = append(b, tagSpend...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(server)))
	b = append(b, server...)
	return append(b, digest[:]...)
}

// NewSpend signs coin c, whose private key is key, for server and the request
// with the given digest. server is the server's peer ID in its binary form,
// at most [MaxServerIDLen] bytes.
func NewSpend(c *Coin, key ed25519.PrivateKey, server []byte, digest [32]byte) (*Spend, error) {
	if len(server) == 0 || len(server) > MaxServerIDLen {
		return nil, fmt.Errorf("%w: server ID length %d", ErrMalformed, len(server))
	}
	if [32]byte(key.Public().(ed25519.PublicKey)) != c.Pub {
		return nil, fmt.Errorf("%w: key does not match coin", ErrBadKey)
	}
	s := &Spend{Coin: *c}
	copy(s.SpendSig[:], ed25519.Sign(key, SpendMessage(server, digest)))
	return s, nil
}

// Designation returns SHA-256(tag || server), the designation of coins that
// only server accepts.
func Designation(server []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(tagDesignate))
	h.Write(server)
	return [32]byte(h.Sum(nil))
}

func sha512Sum(b []byte) [64]byte { return sha512.Sum512(b) }
