package wallet

import (
	"encoding/base32"
	"fmt"
	"strings"
)

// The seed phrase is
//
//	scrip-seed-XXXX-XXXX-...-XXXX
//
// with fourteen groups of four characters: the RFC 4648 base32 encoding
// (A–Z, 2–7) of the 32-byte seed followed by a 3-byte check,
// CRC-24(tag || seed) with the CRC-24 of RFC 4880 (polynomial 0x864CFB,
// initial value 0xB704CE). The CRC detects every error burst of up to 24
// bits, so every single mistyped character (5 bits) and every swap of two
// adjacent characters (10 bits) is caught; other typos slip through with
// probability 2^-24. Parsing ignores case, spaces and where the dashes are.
const (
	phrasePrefix = "scrip-seed-"
	phraseTag    = "scrip/v1/seed\x00"
	phraseChars  = 56 // base32 of 35 bytes
	phraseGroup  = 4
)

var phraseEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Export returns the wallet's seed as a phrase for the user to write down.
// The phrase is the wallet's only secret: whoever has it can spend every
// coin. It must never be logged.
func (w *Wallet) Export() string {
	return formatPhrase(&w.seed)
}

func formatPhrase(seed *[SeedSize]byte) string {
	b := make([]byte, 0, SeedSize+3)
	b = append(b, seed[:]...)
	c := phraseCheck(seed)
	b = append(b, byte(c>>16), byte(c>>8), byte(c))
	enc := phraseEncoding.EncodeToString(b)
	var s strings.Builder
	s.WriteString(phrasePrefix)
	for i := 0; i < len(enc); i += phraseGroup {
		if i > 0 {
			s.WriteByte('-')
		}
		s.WriteString(enc[i : i+phraseGroup])
	}
	return s.String()
}

// parsePhrase returns the seed of a phrase. Errors wrap [ErrPhrase] and
// never echo the phrase.
func parsePhrase(p string) ([SeedSize]byte, error) {
	var seed [SeedSize]byte
	p = strings.TrimSpace(p)
	if len(p) > 4*(len(phrasePrefix)+2*phraseChars) {
		return seed, fmt.Errorf("%w: too long", ErrPhrase)
	}
	if len(p) < len(phrasePrefix) || !strings.EqualFold(p[:len(phrasePrefix)], phrasePrefix) {
		return seed, fmt.Errorf("%w: does not start with %q", ErrPhrase, phrasePrefix)
	}
	body := strings.Map(func(r rune) rune {
		switch r {
		case '-', ' ', '\t', '\n', '\r':
			return -1
		}
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, p[len(phrasePrefix):])
	if len(body) != phraseChars {
		return seed, fmt.Errorf("%w: %d characters, want %d", ErrPhrase, len(body), phraseChars)
	}
	b, err := phraseEncoding.DecodeString(body)
	if err != nil || len(b) != SeedSize+3 {
		return seed, fmt.Errorf("%w: not base32 (letters A-Z and digits 2-7)", ErrPhrase)
	}
	copy(seed[:], b)
	c := phraseCheck(&seed)
	if b[32] != byte(c>>16) || b[33] != byte(c>>8) || b[34] != byte(c) {
		return [SeedSize]byte{}, fmt.Errorf("%w: checksum does not match (a typo?)", ErrPhrase)
	}
	return seed, nil
}

// phraseCheck returns CRC-24(tag || seed).
func phraseCheck(seed *[SeedSize]byte) uint32 {
	return crc24(crc24(crc24Init, []byte(phraseTag)), seed[:])
}

const (
	crc24Init = 0xB704CE
	crc24Poly = 0x1864CFB
)

// crc24 continues the RFC 4880 CRC-24 over b, bit by bit, most significant
// bit first.
func crc24(crc uint32, b []byte) uint32 {
	for _, x := range b {
		crc ^= uint32(x) << 16
		for range 8 {
			crc <<= 1
			if crc&0x1000000 != 0 {
				crc ^= crc24Poly
			}
		}
	}
	return crc & 0xFFFFFF
}
