package vectorgen

// flagNotes explains every flag. A flag of invalid cases names the one error
// of package coin the case must be refused with.
var flagNotes = map[string]string{
	// Valid and acceptable cases.
	"Normal":             "An ordinary keyset.",
	"SingleDenomination": "A keyset with one denomination.",
	"LargestExponent":    "A denomination of 2^63 units, the largest amount.",
	"MaxDenominations":   "A keyset with 64 denominations (MaxDenominations).",
	"LongestUnit":        "A unit name of 32 bytes (MaxUnitLen).",
	"EqualWindows":       "issue_until = spend_until = deposit_until, allowed.",
	"ExtremeTimes":       "not_before = 0 and windows ending at the largest int64.",
	"Bearer":             "A bearer coin (designation zero), accepted by any server.",
	"Designated":         "A coin designated to a server: in coin_verify and spend_verify, to the verifying server; recoup admits a coin designated to any server.",
	"LongestServerID":    "A server peer ID of 256 bytes (MaxServerIDLen).",
	"ShortestServerID":   "A server peer ID of one byte.",
	"TorsionRoot":        "The coin's root q has a small-order component. [8]q is unchanged, so the root still proves the coin key is of prime order: a coin has 8 valid encodings that differ in the root, and spent sets must be keyed by the coin key, never by the coin bytes.",
	"MixedOrderRoot":     "The coin's root is a canonical mixed-order point q; [8]q is of prime order, so the root is good.",
	"AtNotBefore":        "Verified at not_before, the first second of every window.",
	"LastSecond":         "Verified one second before the window closes.",
	"DepositWindow":      "Verified in the deposit window after the spend window closed.",
	"TorsionTagged":      "The mint's signature has R = [r]B + T, T a point of small order, and S = r + k x: valid under ZIP-215 (cofactored; ed25519consensus accepts, and so does coin), refused by the cofactorless crypto/ed25519.Verify and so by the wallet, which checks both when it withdraws.",
	"TorsionTaggedSpend": "The spend signature has R = [r]B + T, T a point of small order: valid under ZIP-215, which coin applies; refused by crypto/ed25519.Verify.",
	"SmallOrderR":        "The mint's signature has R a point of small order and r = 0: valid under ZIP-215, which coin applies; refused by crypto/ed25519.Verify.",
	"NonCanonicalR":      "The mint's signature has R a non-canonical encoding of a small-order point and r = 0: valid under ZIP-215, which hashes R as given; refused by crypto/ed25519.Verify.",

	// ErrMalformed.
	"Truncated":              "The encoding is cut short. Error: coin.ErrMalformed.",
	"TrailingBytes":          "Bytes follow the encoding. Error: coin.ErrMalformed.",
	"WrongVersion":           "The keyset version is not 1. Error: coin.ErrMalformed.",
	"BadUnit":                "The unit is empty, longer than 32 bytes, or has a character outside [A-Za-z0-9._-]. Error: coin.ErrMalformed.",
	"WindowsOutOfOrder":      "Not 0 <= not_before < issue_until <= spend_until <= deposit_until (times as signed int64). Error: coin.ErrMalformed.",
	"NegativeTime":           "not_before is negative as a signed int64. Error: coin.ErrMalformed.",
	"ExponentsNotIncreasing": "Denomination exponents are not strictly increasing. Error: coin.ErrMalformed.",
	"ExponentTooLarge":       "A denomination exponent is 64 or more. Error: coin.ErrMalformed.",
	"NoDenominations":        "The keyset has no denomination. Error: coin.ErrMalformed.",
	"TooManyDenominations":   "The count byte exceeds 64 (MaxDenominations). Error: coin.ErrMalformed.",
	"CountMismatch":          "The count byte disagrees with the denominations that follow, so the encoding ends early or has bytes left. Error: coin.ErrMalformed.",
	"AmountNotPowerOfTwo":    "The coin's amount is zero or not a power of two. Error: coin.ErrMalformed.",
	"NonCanonicalAnswer":     "The mint's answer s is not a canonical scalar (s >= L). Error: coin.ErrMalformed.",
	"BadClauseBit":           "The mint's clause bit b is neither 0 nor 1. Error: coin.ErrMalformed.",
	"NonCanonicalFactor":     "A revealed blinding factor is not a canonical scalar (>= L). Error: coin.ErrMalformed.",

	// ErrBadKey.
	"SmallOrderKey":          "A denomination key is a point of small order. Error: coin.ErrBadKey.",
	"IdentityKey":            "A denomination key is the identity. Error: coin.ErrBadKey.",
	"MixedOrderKey":          "A denomination key is a prime-order point plus a point of small order. Error: coin.ErrBadKey.",
	"NonCanonicalKey":        "A denomination key is a non-canonical point encoding (y >= p, or the sign bit set with x = 0). Error: coin.ErrBadKey.",
	"KeyNotOnCurve":          "A denomination key is not a curve point. Error: coin.ErrBadKey.",
	"RepeatedKey":            "Two denominations share a key. Error: coin.ErrBadKey.",
	"NonCanonicalMintKey":    "The mint key inside the keyset is a non-canonical encoding. Error: coin.ErrBadKey.",
	"TorsionCommitment":      "A mint commitment R_j is a valid commitment plus a point of small order, which could tag the coin. The client refuses it before deriving the blinding factors, which depend on R0 and R1, so the case has no values after R0 and R1. Error: coin.ErrBadKey.",
	"SmallOrderCommitment":   "A mint commitment is a point of small order. The client refuses it before deriving the blinding factors, which depend on R0 and R1, so the case has no values after R0 and R1. Error: coin.ErrBadKey.",
	"IdentityCommitment":     "A mint commitment is the identity. The client refuses it before deriving the blinding factors, which depend on R0 and R1, so the case has no values after R0 and R1. Error: coin.ErrBadKey.",
	"NonCanonicalCommitment": "A mint commitment is a non-canonical encoding. The client refuses it before deriving the blinding factors, which depend on R0 and R1, so the case has no values after R0 and R1. Error: coin.ErrBadKey.",
	"CommitmentNotOnCurve":   "A mint commitment is not a curve point. The client refuses it before deriving the blinding factors, which depend on R0 and R1, so the case has no values after R0 and R1. Error: coin.ErrBadKey.",
	"SmallOrderCoinKey":      "The coin key is a point of small order; the mint signs blindly, so it cannot refuse such a coin, and under such a key a spend signature of the identity and S = 0 passes ZIP-215 for any message. Error: coin.ErrBadKey.",
	"IdentityCoinKey":        "The coin key is the identity. Error: coin.ErrBadKey.",
	"MixedOrderCoinKey":      "The coin key has a small-order component, so no root proves it. Error: coin.ErrBadKey.",
	"NonCanonicalCoinKey":    "The coin key is a non-canonical encoding. Error: coin.ErrBadKey.",
	"CoinKeyNotOnCurve":      "The coin key is not a curve point. Error: coin.ErrBadKey.",
	"NonCanonicalRoot":       "The root is a non-canonical encoding, though [8]root is the coin key. Error: coin.ErrBadKey.",
	"RootMismatch":           "[8]root is not the coin key. Error: coin.ErrBadKey.",
	"RootNotOnCurve":         "The root is not a curve point. Error: coin.ErrBadKey.",

	// ErrUnknownKeyset.
	"UnknownKeyset": "The coin names a keyset the verifier does not know. Error: coin.ErrUnknownKeyset.",

	// ErrOutsideWindow.
	"BeforeNotBefore": "Verified before not_before. Error: coin.ErrOutsideWindow.",
	"AtSpendUntil":    "Verified at spend_until in the spend window; windows are half-open. Error: coin.ErrOutsideWindow.",
	"AtDepositUntil":  "Verified at deposit_until in the deposit window. Error: coin.ErrOutsideWindow.",

	// ErrBadSignature.
	"ModifiedSignature":      "A bit of the mint's signature (on the keyset or the coin) flipped, or the signature zeroed. Error: coin.ErrBadSignature.",
	"NonCanonicalS":          "The mint's signature has S + L in place of S; ZIP-215 and RFC 8032 require S < L. Error: coin.ErrBadSignature.",
	"ModifiedContent":        "A keyset field changed after the mint signed it. Error: coin.ErrBadSignature.",
	"OtherSigner":            "The keyset is signed by a key other than the group's mint key. Error: coin.ErrBadSignature.",
	"WrongSignedMessage":     "The mint signed something other than tag || keyset ID. Error: coin.ErrBadSignature.",
	"AmountMismatch":         "The amount is another denomination of the keyset than the one whose key signed; the verifier takes the key from the amount, so the signature fails. Error: coin.ErrBadSignature.",
	"ModifiedMessage":        "A field of the coin message (coin key and root, or designation) changed after the mint signed; every other check passes. Error: coin.ErrBadSignature.",
	"ModifiedAnswer":         "The mint's answer s is wrong, so the unblinded signature fails. Error: coin.ErrBadSignature.",
	"WrongClause":            "The mint's clause bit names the clause it did not sign. Error: coin.ErrBadSignature.",
	"OtherServer":            "The spend was signed for another server. Error: coin.ErrBadSignature.",
	"OtherDigest":            "The spend was signed for another request. Error: coin.ErrBadSignature.",
	"ModifiedSpendSignature": "The spend signature is altered or replaced. Error: coin.ErrBadSignature.",
	"NonCanonicalSpendS":     "The spend signature has S + L in place of S. Error: coin.ErrBadSignature.",
	"WrongSpendKey":          "The spend is signed by a key other than the coin key. Error: coin.ErrBadSignature.",

	// ErrAmount.
	"AmountNotInKeyset": "The amount is a power of two that the keyset does not offer. Error: coin.ErrAmount.",
	"OtherDenomination": "The coin is of another denomination of the keyset than the row's key, whose signer recomputes the hash. Error: coin.ErrAmount.",
	"CoinOfOtherKeyset": "The coin names another keyset than the group's. Error: coin.ErrAmount.",

	// Recoup proofs refused by hash.
	"OtherSeed":        "The factors are derived from another seed than the one that withdrew the coin. Refused by hash: the proof is well-formed, but its challenge hash differs from the row's (HashMismatch).",
	"ModifiedFactor":   "A revealed factor is changed (canonical), or the factors of the two clauses are swapped. Refused by hash: the proof is well-formed, but its challenge hash differs from the row's (HashMismatch).",
	"OtherNonce":       "The proof names the nonce of another row of the same denomination. Refused by hash: the proof is well-formed, but its challenge hash differs from the row's (HashMismatch).",
	"OtherCoinKey":     "The proof of a row is presented with another coin of the same wallet, amount and designation: only the coin key differs. Refused by hash: the proof is well-formed, but its challenge hash differs from the row's (HashMismatch).",
	"OtherDesignation": "The coin of the row is presented with another designation (the mint never saw the coin message, but the row's challenges bind it). Refused by hash: the proof is well-formed, but its challenge hash differs from the row's (HashMismatch).",
	"ForgedCoin":       "A coin signed with the stolen denomination key: its signature verifies, but no row was issued for it; the thief presents the proof of its own withdrawal. Refused by hash: the proof is well-formed, but its challenge hash differs from the row's (HashMismatch).",

	// ErrDesignated.
	"DesignatedToOther": "The coin is designated to another server. Error: coin.ErrDesignated.",

	// protocol: price quotes (valid cases).
	"SpecExample": "An example given in SPEC.md §8.",
	"Exact":       "Every term is a whole number: nothing is rounded.",
	"RoundUp":     "At least one term has a remainder and is rounded up on its own.",
	"MaxQuote":    "The quote is 2^64 − 1, the largest.",
	"WideProduct": "A product of the case exceeds 2^64 − 1: it must be formed in more bits (up to 192 for the storage term) without overflow or rounding.",
	"Random":      "Rates and usage drawn from the seeded generator.",

	// protocol: price quotes (invalid cases).
	"Overflow": "A term or the sum exceeds 2^64 − 1, so the call cannot be priced. Error: protocol.ErrPriceOverflow.",

	// protocol: the permuted ring.
	"SinglePeer":    "A ring of one server.",
	"FullRing":      "At most 100 servers: the case lists the whole ring.",
	"LargeRing":     "More than 100 servers: the case lists the first 20 of the ring; ringDigest covers all of it.",
	"EdgeIndex":     "The storage index is all zero or all 0xff bytes.",
	"FirstM":        "The case gives m and the first m servers of the ring (protocol.FirstM); all of the ring when m exceeds the number of servers.",
	"DuplicatePeer": "A server is listed more than once and appears on the ring that many times, its copies adjacent.",

	// protocol: request digests.
	"EmptyBody":       "The request body is empty.",
	"RandomBody":      "The body is drawn from the seeded generator.",
	"OtherProtocol":   "A body of another case under another protocol ID: the digest differs.",
	"EmptyProtocolID": "The protocol ID is empty (length 00 00).",
	"LengthPrefix":    "protocolId || body equals that of another case; only the length prefix tells the two apart.",
	"LongProtocolID":  "A protocol ID of 255 bytes or more, so that both bytes of its u16 length matter.",
}
