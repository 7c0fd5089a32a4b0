package testvectors

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"github.com/hdevalence/ed25519consensus"
	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/testvectors/internal/vectorgen"
)

// The runner reads the files the way another implementation would: its own
// types, unknown fields refused, every value recomputed through package coin.

// hexBytes is a lowercase hex string in JSON.
type hexBytes []byte

func (h *hexBytes) UnmarshalText(text []byte) error {
	b, err := hex.DecodeString(string(text))
	if err != nil {
		return err
	}
	if hex.EncodeToString(b) != string(text) {
		return fmt.Errorf("hex %q is not lowercase", text)
	}
	*h = b
	return nil
}

type vectorFile[G any] struct {
	Algorithm     string            `json:"algorithm"`
	Schema        string            `json:"schema"`
	Header        []string          `json:"header"`
	Notes         map[string]string `json:"notes"`
	NumberOfTests int               `json:"numberOfTests"`
	TestGroups    []G               `json:"testGroups"`
}

type testCase struct {
	TcID    int      `json:"tcId"`
	Comment string   `json:"comment"`
	Flags   []string `json:"flags"`
	Result  string   `json:"result"`
}

func (c *testCase) base() *testCase { return c }

type caser interface{ base() *testCase }

// flagErrors maps every flag to the sentinel error of an invalid case that
// carries it, or to nil for a flag that only describes a case.
var flagErrors = map[string]error{
	"Normal": nil, "SingleDenomination": nil, "LargestExponent": nil, "MaxDenominations": nil,
	"LongestUnit": nil, "EqualWindows": nil, "ExtremeTimes": nil, "Bearer": nil, "Designated": nil,
	"LongestServerID": nil, "ShortestServerID": nil, "TorsionRoot": nil, "MixedOrderRoot": nil,
	"AtNotBefore": nil, "LastSecond": nil, "DepositWindow": nil,
	"TorsionTagged": nil, "TorsionTaggedSpend": nil, "SmallOrderR": nil, "NonCanonicalR": nil,

	"Truncated": coin.ErrMalformed, "TrailingBytes": coin.ErrMalformed, "WrongVersion": coin.ErrMalformed,
	"BadUnit": coin.ErrMalformed, "WindowsOutOfOrder": coin.ErrMalformed, "NegativeTime": coin.ErrMalformed,
	"ExponentsNotIncreasing": coin.ErrMalformed, "ExponentTooLarge": coin.ErrMalformed,
	"NoDenominations": coin.ErrMalformed, "TooManyDenominations": coin.ErrMalformed,
	"CountMismatch": coin.ErrMalformed, "AmountNotPowerOfTwo": coin.ErrMalformed,
	"NonCanonicalAnswer": coin.ErrMalformed, "BadClauseBit": coin.ErrMalformed,
	"NonCanonicalFactor": coin.ErrMalformed,

	"SmallOrderKey": coin.ErrBadKey, "IdentityKey": coin.ErrBadKey, "MixedOrderKey": coin.ErrBadKey,
	"NonCanonicalKey": coin.ErrBadKey, "KeyNotOnCurve": coin.ErrBadKey, "RepeatedKey": coin.ErrBadKey,
	"NonCanonicalMintKey": coin.ErrBadKey, "TorsionCommitment": coin.ErrBadKey,
	"SmallOrderCommitment": coin.ErrBadKey, "IdentityCommitment": coin.ErrBadKey,
	"NonCanonicalCommitment": coin.ErrBadKey, "CommitmentNotOnCurve": coin.ErrBadKey,
	"SmallOrderCoinKey": coin.ErrBadKey, "IdentityCoinKey": coin.ErrBadKey,
	"MixedOrderCoinKey": coin.ErrBadKey, "NonCanonicalCoinKey": coin.ErrBadKey,
	"CoinKeyNotOnCurve": coin.ErrBadKey, "NonCanonicalRoot": coin.ErrBadKey,
	"RootMismatch": coin.ErrBadKey, "RootNotOnCurve": coin.ErrBadKey,

	"UnknownKeyset": coin.ErrUnknownKeyset,

	"BeforeNotBefore": coin.ErrOutsideWindow, "AtSpendUntil": coin.ErrOutsideWindow,
	"AtDepositUntil": coin.ErrOutsideWindow,

	"ModifiedSignature": coin.ErrBadSignature, "NonCanonicalS": coin.ErrBadSignature,
	"ModifiedContent": coin.ErrBadSignature, "OtherSigner": coin.ErrBadSignature,
	"WrongSignedMessage": coin.ErrBadSignature, "AmountMismatch": coin.ErrBadSignature,
	"ModifiedMessage": coin.ErrBadSignature, "ModifiedAnswer": coin.ErrBadSignature,
	"WrongClause": coin.ErrBadSignature, "OtherServer": coin.ErrBadSignature,
	"OtherDigest": coin.ErrBadSignature, "ModifiedSpendSignature": coin.ErrBadSignature,
	"NonCanonicalSpendS": coin.ErrBadSignature, "WrongSpendKey": coin.ErrBadSignature,

	"AmountNotInKeyset": coin.ErrAmount, "OtherDenomination": coin.ErrAmount, "CoinOfOtherKeyset": coin.ErrAmount,
	"DesignatedToOther": coin.ErrDesignated,

	// Recoup proofs refused by hash.
	"OtherSeed": errHashMismatch, "ModifiedFactor": errHashMismatch, "OtherNonce": errHashMismatch,
	"OtherCoinKey": errHashMismatch, "OtherDesignation": errHashMismatch, "ForgedCoin": errHashMismatch,

	// Package protocol.
	"SpecExample": nil, "Exact": nil, "RoundUp": nil, "MaxQuote": nil, "WideProduct": nil, "Random": nil,
	"SinglePeer": nil, "FullRing": nil, "LargeRing": nil, "EdgeIndex": nil, "FirstM": nil, "DuplicatePeer": nil,
	"EmptyBody": nil, "RandomBody": nil, "OtherProtocol": nil, "EmptyProtocolID": nil, "LengthPrefix": nil,
	"LongProtocolID": nil,

	"Overflow": protocol.ErrPriceOverflow,
}

// errHashMismatch is the outcome of a recoup proof that is well-formed but
// whose recomputed challenge hash differs from the row's. Package coin
// returns the hash and leaves the comparison to its caller, so the runner
// names this outcome itself.
var errHashMismatch = errors.New("recoup: challenge hash differs from the row's")

// sentinels are the errors of packages coin and protocol that the vectors
// name, and the runner's errHashMismatch; every failure wraps exactly one.
var sentinels = []error{
	coin.ErrMalformed, coin.ErrBadKey, coin.ErrUnknownKeyset, coin.ErrOutsideWindow,
	coin.ErrBadSignature, coin.ErrDesignated, coin.ErrAmount, coin.ErrNoExactChange,
	protocol.ErrPriceOverflow, errHashMismatch,
}

func sentinelName(err error) string {
	for _, n := range []struct {
		err  error
		name string
	}{
		{coin.ErrMalformed, "ErrMalformed"}, {coin.ErrBadKey, "ErrBadKey"},
		{coin.ErrUnknownKeyset, "ErrUnknownKeyset"}, {coin.ErrOutsideWindow, "ErrOutsideWindow"},
		{coin.ErrBadSignature, "ErrBadSignature"}, {coin.ErrDesignated, "ErrDesignated"},
		{coin.ErrAmount, "ErrAmount"}, {coin.ErrNoExactChange, "ErrNoExactChange"},
	} {
		if n.err == err {
			return "coin." + n.name
		}
	}
	switch err {
	case protocol.ErrPriceOverflow:
		return "protocol.ErrPriceOverflow"
	case errHashMismatch:
		return "HashMismatch"
	}
	return ""
}

// runners checks each vector file; every *.json file must have one.
var runners = map[string]func(t *testing.T, data []byte){
	"keyset_test.json":         runKeyset,
	"coin_issue_test.json":     runIssue,
	"coin_verify_test.json":    runCoinVerify,
	"spend_verify_test.json":   runSpendVerify,
	"recoup_test.json":         runRecoup,
	"price_test.json":          runPrice,
	"ring_test.json":           runRing,
	"request_digest_test.json": runRequestDigest,
}

func TestVectors(t *testing.T) {
	names, err := fs.Glob(Vectors, "*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no vector files")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			run, ok := runners[name]
			if !ok {
				t.Fatalf("no runner for %s", name)
			}
			data, err := fs.ReadFile(Vectors, name)
			if err != nil {
				t.Fatal(err)
			}
			run(t, data)
		})
	}
	for name := range runners {
		if !slices.Contains(names, name) {
			t.Errorf("%s is missing", name)
		}
	}
}

// decode reads a vector file strictly and checks what every file shares:
// the test count, unique tcIds, results, flags described in notes and mapped
// to one sentinel error for each invalid case, and the schema file.
func decode[G any](t *testing.T, data []byte, tests func(g *G) []caser) *vectorFile[G] {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f vectorFile[G]
	if err := dec.Decode(&f); err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("data after the vector file: %v", err)
	}
	if f.Algorithm == "" || len(f.Header) == 0 || len(f.TestGroups) == 0 {
		t.Fatal("algorithm, header or testGroups empty")
	}
	if _, err := fs.Stat(Vectors, path.Join("schemas", f.Schema)); err != nil || !strings.HasSuffix(f.Schema, "_schema.json") {
		t.Fatalf("schema %q: %v", f.Schema, err)
	}
	n := 0
	seen := make(map[int]bool)
	used := make(map[string]bool)
	for i := range f.TestGroups {
		for _, tc := range tests(&f.TestGroups[i]) {
			c := tc.base()
			n++
			if c.TcID < 1 || seen[c.TcID] {
				t.Errorf("tcId %d repeated or out of range", c.TcID)
			}
			seen[c.TcID] = true
			if c.Comment == "" || c.Flags == nil {
				t.Errorf("tcId %d: no comment or flags", c.TcID)
			}
			for _, fl := range c.Flags {
				used[fl] = true
				if _, ok := f.Notes[fl]; !ok {
					t.Errorf("tcId %d: flag %s is not in notes", c.TcID, fl)
				}
			}
			if _, err := want(c); err != nil {
				t.Errorf("tcId %d: %v", c.TcID, err)
			}
		}
	}
	if n != f.NumberOfTests {
		t.Errorf("numberOfTests is %d, file has %d", f.NumberOfTests, n)
	}
	for fl, note := range f.Notes {
		if !used[fl] {
			t.Errorf("note for unused flag %s", fl)
		}
		err, ok := flagErrors[fl]
		if !ok {
			t.Errorf("flag %s is unknown to the runner", fl)
			continue
		}
		if name := sentinelName(err); name != "" && !strings.Contains(note, name) ||
			name == "" && strings.Contains(note, "Error:") {
			t.Errorf("note of %s disagrees with the runner's error %v: %q", fl, err, note)
		}
	}
	return &f
}

// want returns the error an invalid case must be refused with, or nil.
func want(c *testCase) (error, error) {
	var errs []error
	for _, fl := range c.Flags {
		e, ok := flagErrors[fl]
		if !ok {
			return nil, fmt.Errorf("unknown flag %s", fl)
		}
		if e != nil && !slices.Contains(errs, e) {
			errs = append(errs, e)
		}
	}
	switch c.Result {
	case "valid", "acceptable":
		if len(errs) != 0 {
			return nil, fmt.Errorf("%s case with error flags %v", c.Result, c.Flags)
		}
		if c.Result == "acceptable" && !slices.ContainsFunc(c.Flags, isAcceptableFlag) {
			return nil, fmt.Errorf("acceptable case without a flag saying why")
		}
		return nil, nil
	case "invalid":
		if len(errs) != 1 {
			return nil, fmt.Errorf("flags %v name %d errors, want 1", c.Flags, len(errs))
		}
		return errs[0], nil
	}
	return nil, fmt.Errorf("result %q", c.Result)
}

func isAcceptableFlag(fl string) bool {
	return fl == "TorsionTagged" || fl == "TorsionTaggedSpend" || fl == "SmallOrderR" || fl == "NonCanonicalR"
}

// check reports whether err is what the case expects: nil, or an error
// wrapping its one sentinel and no other.
func check(t *testing.T, c *testCase, err error) {
	t.Helper()
	w, _ := want(c)
	if w == nil {
		if err != nil {
			t.Errorf("tcId %d (%s): %v", c.TcID, c.Comment, err)
		}
		return
	}
	if !errors.Is(err, w) {
		t.Errorf("tcId %d (%s): got %v, want %v", c.TcID, c.Comment, err, w)
		return
	}
	for _, s := range sentinels {
		if s != w && errors.Is(err, s) {
			t.Errorf("tcId %d (%s): %v wraps %v as well as %v", c.TcID, c.Comment, err, s, w)
		}
	}
}

// checkTriple checks a signature with both Ed25519 rules: a valid case
// passes both, and an acceptable case whose flags name this signature
// (tagged) passes ZIP-215 only.
func checkTriple(t *testing.T, c *testCase, what string, tagged bool, pub, msg, sig []byte) {
	t.Helper()
	if c.Result == "invalid" {
		return
	}
	zip215 := ed25519consensus.Verify(pub, msg, sig)
	std := len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig)
	if !zip215 {
		t.Errorf("tcId %d: ed25519consensus refuses the %s", c.TcID, what)
	}
	if wantStd := c.Result == "valid" || !tagged; std != wantStd {
		t.Errorf("tcId %d: crypto/ed25519.Verify on the %s: %v, want %v", c.TcID, what, std, wantStd)
	}
}

func eq(t *testing.T, c *testCase, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("tcId %d: %s is %x, vector has %x", c.TcID, what, got, want)
	}
}

// keyset_test.json

type keysetGroup struct {
	MintKey hexBytes     `json:"mintKey"`
	Tests   []keysetTest `json:"tests"`
}

type keysetTest struct {
	testCase
	Keyset hexBytes `json:"keyset"`
	ID     hexBytes `json:"id"`
}

func runKeyset(t *testing.T, data []byte) {
	f := decode(t, data, func(g *keysetGroup) []caser { return casers(g.Tests) })
	for _, g := range f.TestGroups {
		for i := range g.Tests {
			tc := &g.Tests[i]
			c := &tc.testCase
			ks, err := coin.ParseKeyset(tc.Keyset, ed25519.PublicKey(g.MintKey))
			check(t, c, err)
			if (tc.ID != nil) != (c.Result != "invalid") {
				t.Errorf("tcId %d: id given for an invalid case or missing for a valid one", c.TcID)
			}
			if err != nil {
				continue
			}
			id := ks.ID()
			eq(t, c, "keyset ID", id[:], tc.ID)
			eq(t, c, "re-encoding", ks.Bytes(), tc.Keyset)
			sig := tc.Keyset[len(tc.Keyset)-ed25519.SignatureSize:]
			msg := append([]byte("scrip/v1/keyset-sig\x00"), id[:]...)
			checkTriple(t, c, "keyset signature", true, g.MintKey, msg, sig)
		}
	}
}

func casers[T any, P interface {
	*T
	caser
}](tests []T) []caser {
	out := make([]caser, len(tests))
	for i := range tests {
		out[i] = P(&tests[i])
	}
	return out
}

// coin_issue_test.json

type issueGroup struct {
	Keyset       hexBytes    `json:"keyset"`
	MintKey      hexBytes    `json:"mintKey"`
	KeysetSecret hexBytes    `json:"keysetSecret"`
	Tests        []issueTest `json:"tests"`
}

type issueTest struct {
	testCase
	Seed          hexBytes `json:"seed"`
	Counter       uint64   `json:"counter"`
	Nonce         hexBytes `json:"nonce"`
	Amount        uint64   `json:"amount"`
	KeysetID      hexBytes `json:"keysetId"`
	PublicKey     hexBytes `json:"publicKey"`
	Designated    hexBytes `json:"designated"`
	CoinPub       hexBytes `json:"coinPub"`
	CoinRoot      hexBytes `json:"coinRoot"`
	Msg           hexBytes `json:"msg"`
	Alpha0        hexBytes `json:"alpha0"`
	Beta0         hexBytes `json:"beta0"`
	Alpha1        hexBytes `json:"alpha1"`
	Beta1         hexBytes `json:"beta1"`
	R0            hexBytes `json:"R0"`
	R1            hexBytes `json:"R1"`
	R0Prime       hexBytes `json:"R0prime"`
	R1Prime       hexBytes `json:"R1prime"`
	C0            hexBytes `json:"c0"`
	C1            hexBytes `json:"c1"`
	ChallengeHash hexBytes `json:"challengeHash"`
	B             *uint8   `json:"b"`
	S             hexBytes `json:"s"`
	Sig           hexBytes `json:"sig"`
	Coin          hexBytes `json:"coin"`
}

// challengeStage reports whether the case's fault is in the commitments,
// which Withdrawal.Challenges refuses.
func challengeStage(c *testCase) bool {
	return slices.ContainsFunc(c.Flags, func(fl string) bool { return strings.Contains(fl, "Commitment") })
}

func runIssue(t *testing.T, data []byte) {
	f := decode(t, data, func(g *issueGroup) []caser { return casers(g.Tests) })
	for _, g := range f.TestGroups {
		mintKey := ed25519.PublicKey(g.MintKey)
		ks, err := coin.ParseKeyset(g.Keyset, mintKey)
		if err != nil {
			t.Fatal(err)
		}
		sec, err := coin.ParseKeysetSecret(g.KeysetSecret, mintKey)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sec.Keyset().Bytes(), g.Keyset) || !bytes.Equal(sec.Bytes(), g.KeysetSecret) {
			t.Fatal("keyset secret does not match the group's keyset or its encoding")
		}
		for i := range g.Tests {
			runIssueCase(t, ks, sec, &g.Tests[i])
		}
	}
}

// issueFields returns the names of the transcript values after R0 and R1
// that tc gives or lacks (given true: the ones present).
func issueFields(tc *issueTest, given bool) []string {
	var out []string
	for _, f := range []struct {
		name string
		ok   bool
	}{
		{"alpha0", tc.Alpha0 != nil}, {"beta0", tc.Beta0 != nil}, {"alpha1", tc.Alpha1 != nil},
		{"beta1", tc.Beta1 != nil}, {"R0prime", tc.R0Prime != nil}, {"R1prime", tc.R1Prime != nil},
		{"c0", tc.C0 != nil}, {"c1", tc.C1 != nil}, {"challengeHash", tc.ChallengeHash != nil},
		{"b", tc.B != nil}, {"s", tc.S != nil}, {"sig", tc.Sig != nil}, {"coin", tc.Coin != nil},
	} {
		if f.ok == given {
			out = append(out, f.name)
		}
	}
	return out
}

func runIssueCase(t *testing.T, ks *coin.Keyset, sec *coin.KeysetSecret, tc *issueTest) {
	c := &tc.testCase
	// A valid transcript is whole; an invalid one stops at its fault.
	switch {
	case c.Result == "valid":
		missing := issueFields(tc, false)
		if tc.PublicKey == nil || tc.Msg == nil || tc.R0 == nil || tc.R1 == nil {
			missing = append(missing, "publicKey, msg, R0 or R1")
		}
		if len(missing) != 0 {
			t.Errorf("tcId %d: valid transcript without %v", c.TcID, missing)
		}
	case challengeStage(c):
		if given := issueFields(tc, true); len(given) != 0 {
			t.Errorf("tcId %d: %v given after the refused commitments", c.TcID, given)
		}
	default:
		if missing := issueFields(tc, false); !slices.Equal(missing, []string{"sig", "coin"}) {
			t.Errorf("tcId %d: refused answer lacks %v, want exactly sig and coin", c.TcID, missing)
		}
	}
	w, err := coin.NewWithdrawal((*[32]byte)(tc.Seed), tc.Counter, ks, tc.Amount, [32]byte(tc.Designated))
	if err != nil {
		t.Errorf("tcId %d: NewWithdrawal: %v", c.TcID, err)
		return
	}
	id, nonce := ks.ID(), w.Nonce()
	key, _ := ks.Key(tc.Amount)
	tr := w.Transcript()
	eq(t, c, "keysetId", id[:], tc.KeysetID)
	eq(t, c, "publicKey", key[:], tc.PublicKey)
	eq(t, c, "nonce", nonce[:], tc.Nonce)
	eq(t, c, "msg", tr.Message, tc.Msg)
	eq(t, c, "coinPub", tr.CoinPub[:], tc.CoinPub)
	eq(t, c, "coinRoot", tr.CoinRoot[:], tc.CoinRoot)
	coinPub := ed25519.NewKeyFromSeed(w.CoinKey().Seed()).Public().(ed25519.PublicKey)
	eq(t, c, "coin key", coinPub, tc.CoinPub)

	signer, err := sec.Signer(tc.Amount)
	if err != nil {
		t.Fatal(err)
	}
	if c.Result == "valid" {
		r0, r1 := signer.Begin(nonce)
		eq(t, c, "mint's R0", r0[:], tc.R0)
		eq(t, c, "mint's R1", r1[:], tc.R1)
	}

	c0, c1, err := w.Challenges([32]byte(tc.R0), [32]byte(tc.R1))
	if challengeStage(c) {
		check(t, c, err)
		return
	}
	if err != nil {
		t.Errorf("tcId %d: Challenges: %v", c.TcID, err)
		return
	}
	tr = w.Transcript()
	eq(t, c, "alpha0", tr.Alpha0[:], tc.Alpha0)
	eq(t, c, "beta0", tr.Beta0[:], tc.Beta0)
	eq(t, c, "alpha1", tr.Alpha1[:], tc.Alpha1)
	eq(t, c, "beta1", tr.Beta1[:], tc.Beta1)
	h := coin.ChallengeHash(c0, c1)
	eq(t, c, "c0", c0[:], tc.C0)
	eq(t, c, "c1", c1[:], tc.C1)
	eq(t, c, "R0prime", tr.RPrime0[:], tc.R0Prime)
	eq(t, c, "R1prime", tr.RPrime1[:], tc.R1Prime)
	eq(t, c, "challengeHash", h[:], tc.ChallengeHash)
	if tc.B == nil || tc.S == nil {
		t.Errorf("tcId %d: no answer", c.TcID)
		return
	}

	row, err := signer.Finish(time.Unix(ks.NotBefore, 0), nonce, c0, c1)
	if err != nil {
		t.Errorf("tcId %d: Signer.Finish: %v", c.TcID, err)
		return
	}
	if !row.Matches(c0, c1) || row.ChallengeHash != h {
		t.Errorf("tcId %d: row does not match its challenges", c.TcID)
	}
	if c.Result == "valid" && (row.B != *tc.B || !bytes.Equal(row.S[:], tc.S)) {
		t.Errorf("tcId %d: mint answers (%d, %x), vector has (%d, %x)", c.TcID, row.B, row.S, *tc.B, tc.S)
	}

	cn, err := w.Finish(coin.Answer{B: *tc.B, S: [32]byte(tc.S)})
	check(t, c, err)
	if (tc.Sig != nil || tc.Coin != nil) != (c.Result == "valid") {
		t.Errorf("tcId %d: sig and coin given for an invalid case or missing for a valid one", c.TcID)
	}
	if err != nil {
		return
	}
	eq(t, c, "sig", cn.Sig[:], tc.Sig)
	eq(t, c, "coin", cn.Bytes(), tc.Coin)
	eq(t, c, "coin message", cn.Message(), tc.Msg)
	checkTriple(t, c, "coin signature", false, tc.PublicKey, tc.Msg, tc.Sig)
}

// coin_verify_test.json

type coinVerifyGroup struct {
	Keyset  hexBytes         `json:"keyset"`
	MintKey hexBytes         `json:"mintKey"`
	Server  hexBytes         `json:"server"`
	Time    int64            `json:"time"`
	Window  string           `json:"window"`
	Tests   []coinVerifyTest `json:"tests"`
}

type coinVerifyTest struct {
	testCase
	Coin      hexBytes `json:"coin"`
	PublicKey hexBytes `json:"publicKey"`
	Msg       hexBytes `json:"msg"`
	Sig       hexBytes `json:"sig"`
}

func parseWindow(t *testing.T, s string) coin.Window {
	for _, w := range []coin.Window{coin.WindowIssue, coin.WindowSpend, coin.WindowDeposit} {
		if w.String() == s {
			return w
		}
	}
	t.Fatalf("window %q", s)
	return 0
}

// groupKeyset parses a group's keyset, which must be valid.
func groupKeyset(t *testing.T, enc, mintKey []byte) (*coin.Keyset, coin.KeysetMap) {
	t.Helper()
	ks, err := coin.ParseKeyset(enc, ed25519.PublicKey(mintKey))
	if err != nil {
		t.Fatalf("group keyset: %v", err)
	}
	m := coin.KeysetMap{}
	m.Add(ks)
	return ks, m
}

// coinTag is the domain tag of coin messages; a coin message is the tag
// followed by the first 104 bytes of the coin encoding, and sig the next 64.
const coinTag = "scrip/v1/coin\x00"

// coinMsgSize is the length of a coin message.
const coinMsgSize = len(coinTag) + 32 + 8 + 32 + 32

// tripleSource is the coin part of the triple of a file's first valid case:
// msg without its tag, then sig (the first 168 bytes of its coin encoding).
// An encoding that does not parse takes its triple from that coin.
type tripleSource []byte

// firstValid returns the case with the lowest tcId among the valid ones.
func firstValid[T any](t *testing.T, groups [][]T, base func(*T) *testCase) *T {
	t.Helper()
	var first *T
	for _, g := range groups {
		for i := range g {
			c := base(&g[i])
			if c.Result == "valid" && (first == nil || c.TcID < base(first).TcID) {
				first = &g[i]
			}
		}
	}
	if first == nil {
		t.Fatal("no valid case")
	}
	return first
}

func sourceOf(msg, sig []byte) tripleSource {
	if len(msg) != coinMsgSize {
		return nil
	}
	return tripleSource(slices.Concat(msg[len(coinTag):], sig))
}

// bothVerify reports whether sig passes both the cofactorless
// crypto/ed25519.Verify and ZIP-215.
func bothVerify(pub, msg, sig []byte) bool {
	return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig) && ed25519consensus.Verify(pub, msg, sig)
}

// checkMintTriple checks the triple (publicKey, msg, sig) that every case
// carries, by the rule of the file's header. enc is the case's coin encoding
// (the coin part of a spend), cn the parsed coin or nil when the encoding
// does not parse, and src the triple source of the file's first valid case.
func checkMintTriple(t *testing.T, c *testCase, ks *coin.Keyset, enc []byte, cn *coin.Coin, src tripleSource, pub, msg, sig []byte) {
	t.Helper()
	if len(pub) != 32 || len(sig) != 64 || len(msg) != coinMsgSize || !bytes.HasPrefix(msg, []byte(coinTag)) {
		t.Errorf("tcId %d: publicKey, msg or sig missing or malformed", c.TcID)
		return
	}
	// The coin of the triple: the parsed one, or the first valid case's.
	body := sourceOf(msg, sig)
	if cn != nil {
		eq(t, c, "msg", cn.Message(), msg)
		eq(t, c, "sig", cn.Sig[:], sig)
	} else {
		eq(t, c, "msg || sig of an encoding that does not parse, against the first valid case's", body, src)
		// It agrees with the encoding on every byte but the amount.
		for i := range min(len(enc), len(body)) {
			if (i < 32 || i >= 40) && enc[i] != body[i] {
				t.Errorf("tcId %d: msg || sig differs from the encoding at byte %d", c.TcID, i)
				break
			}
		}
	}
	var id [32]byte
	copy(id[:], body[:32])
	amount := binary.BigEndian.Uint64(body[32:40])
	if key, ok := ks.Key(amount); ok && id == ks.ID() {
		eq(t, c, "publicKey", key[:], pub)
	} else if !bothVerify(pub, msg, sig) {
		// The group's keyset has no key for the coin: publicKey is the key
		// that signed it.
		t.Errorf("tcId %d: the triple of a coin without a key in the group's keyset does not verify", c.TcID)
	}
	tagged := slices.ContainsFunc(c.Flags, func(fl string) bool {
		return fl == "TorsionTagged" || fl == "SmallOrderR" || fl == "NonCanonicalR"
	})
	if w, _ := want(c); c.Result == "invalid" && w != coin.ErrBadSignature && !bothVerify(pub, msg, sig) {
		t.Errorf("tcId %d: the triple of a case refused with %v does not verify", c.TcID, w)
	}
	checkTriple(t, c, "mint signature", tagged, pub, msg, sig)
}

func runCoinVerify(t *testing.T, data []byte) {
	f := decode(t, data, func(g *coinVerifyGroup) []caser { return casers(g.Tests) })
	var groups [][]coinVerifyTest
	for _, g := range f.TestGroups {
		groups = append(groups, g.Tests)
	}
	first := firstValid(t, groups, func(tc *coinVerifyTest) *testCase { return &tc.testCase })
	src := sourceOf(first.Msg, first.Sig)
	for _, g := range f.TestGroups {
		ks, keysets := groupKeyset(t, g.Keyset, g.MintKey)
		v := &coin.Verifier{Keysets: keysets, Server: g.Server, Window: parseWindow(t, g.Window)}
		now := time.Unix(g.Time, 0)
		for i := range g.Tests {
			tc := &g.Tests[i]
			c := &tc.testCase
			cn, err := coin.ParseCoin(tc.Coin)
			if err == nil {
				eq(t, c, "re-encoding", cn.Bytes(), tc.Coin)
				err = v.VerifyCoin(cn, now)
			}
			check(t, c, err)
			checkMintTriple(t, c, ks, tc.Coin, cn, src, tc.PublicKey, tc.Msg, tc.Sig)
		}
	}
}

// spend_verify_test.json

type spendVerifyGroup struct {
	Keyset  hexBytes          `json:"keyset"`
	MintKey hexBytes          `json:"mintKey"`
	Time    int64             `json:"time"`
	Window  string            `json:"window"`
	Tests   []spendVerifyTest `json:"tests"`
}

type spendVerifyTest struct {
	testCase
	Server        hexBytes `json:"server"`
	Digest        hexBytes `json:"digest"`
	Spend         hexBytes `json:"spend"`
	CoinPublicKey hexBytes `json:"coinPublicKey"`
	SpendMsg      hexBytes `json:"spendMsg"`
	SpendSig      hexBytes `json:"spendSig"`
	PublicKey     hexBytes `json:"publicKey"`
	Msg           hexBytes `json:"msg"`
	Sig           hexBytes `json:"sig"`
}

func runSpendVerify(t *testing.T, data []byte) {
	f := decode(t, data, func(g *spendVerifyGroup) []caser { return casers(g.Tests) })
	var groups [][]spendVerifyTest
	for _, g := range f.TestGroups {
		groups = append(groups, g.Tests)
	}
	first := firstValid(t, groups, func(tc *spendVerifyTest) *testCase { return &tc.testCase })
	src := sourceOf(first.Msg, first.Sig)
	for _, g := range f.TestGroups {
		ks, keysets := groupKeyset(t, g.Keyset, g.MintKey)
		window := parseWindow(t, g.Window)
		now := time.Unix(g.Time, 0)
		// The spends of the group that parse, by server, for VerifyBatch.
		batches := make(map[string][]coin.Item)
		wants := make(map[string][]*testCase)
		for i := range g.Tests {
			tc := &g.Tests[i]
			c := &tc.testCase
			v := &coin.Verifier{Keysets: keysets, Server: tc.Server, Window: window}
			digest := [32]byte(tc.Digest)
			s, err := coin.ParseSpend(tc.Spend)
			if err == nil {
				eq(t, c, "re-encoding", s.Bytes(), tc.Spend)
				err = v.VerifySpend(s, digest, now)
				batches[string(tc.Server)] = append(batches[string(tc.Server)], coin.Item{Spend: s, Digest: digest})
				wants[string(tc.Server)] = append(wants[string(tc.Server)], c)
			}
			check(t, c, err)

			// The spend triple: the parsed spend's, or for an encoding
			// that does not parse, the first valid case's spend, made for
			// this case's server and digest.
			eq(t, c, "spendMsg", coin.SpendMessage(tc.Server, digest), tc.SpendMsg)
			var cn *coin.Coin
			if s != nil {
				cn = &s.Coin
				eq(t, c, "coinPublicKey", s.Pub[:], tc.CoinPublicKey)
				eq(t, c, "spendSig", s.SpendSig[:], tc.SpendSig)
				checkTriple(t, c, "spend signature", slices.Contains(c.Flags, "TorsionTaggedSpend"), tc.CoinPublicKey, tc.SpendMsg, tc.SpendSig)
			} else {
				eq(t, c, "coinPublicKey of an encoding that does not parse, against the first valid case's", tc.CoinPublicKey, first.CoinPublicKey)
				eq(t, c, "spendSig of an encoding that does not parse, against the first valid case's", tc.SpendSig, first.SpendSig)
				if len(tc.Spend) > coin.CoinSize {
					n := min(len(tc.Spend)-coin.CoinSize, len(tc.SpendSig))
					eq(t, c, "spendSig bytes present in the encoding", tc.SpendSig[:n], tc.Spend[coin.CoinSize:coin.CoinSize+n])
				}
				if !bothVerify(tc.CoinPublicKey, tc.SpendMsg, tc.SpendSig) {
					t.Errorf("tcId %d: the spend triple of an encoding that does not parse does not verify", c.TcID)
				}
			}
			enc := tc.Spend[:min(len(tc.Spend), coin.CoinSize)]
			checkMintTriple(t, c, ks, enc, cn, src, tc.PublicKey, tc.Msg, tc.Sig)
		}
		for server, items := range batches {
			v := &coin.Verifier{Keysets: keysets, Server: []byte(server), Window: window}
			err := v.VerifyBatch(items, now)
			var be *coin.BatchError
			if err != nil && !errors.As(err, &be) {
				t.Fatalf("VerifyBatch: %v is not a *BatchError", err)
			}
			for i, c := range wants[server] {
				var itemErr error
				if be != nil {
					itemErr = be.Errs[i]
				}
				check(t, c, itemErr)
			}
		}
	}
}

// recoup_test.json

type recoupGroup struct {
	Keyset       hexBytes     `json:"keyset"`
	MintKey      hexBytes     `json:"mintKey"`
	KeysetSecret hexBytes     `json:"keysetSecret"`
	Tests        []recoupTest `json:"tests"`
}

type recoupTest struct {
	testCase
	Seed             hexBytes `json:"seed"`
	Nonce            hexBytes `json:"nonce"`
	Amount           uint64   `json:"amount"`
	KeysetID         hexBytes `json:"keysetId"`
	CoinPub          hexBytes `json:"coinPub"`
	Designated       hexBytes `json:"designated"`
	Msg              hexBytes `json:"msg"`
	Coin             hexBytes `json:"coin"`
	PublicKey        hexBytes `json:"publicKey"`
	RowChallengeHash hexBytes `json:"rowChallengeHash"`
	R0               hexBytes `json:"R0"`
	R1               hexBytes `json:"R1"`
	Alpha0           hexBytes `json:"alpha0"`
	Beta0            hexBytes `json:"beta0"`
	Alpha1           hexBytes `json:"alpha1"`
	Beta1            hexBytes `json:"beta1"`
	R0Prime          hexBytes `json:"R0prime"`
	R1Prime          hexBytes `json:"R1prime"`
	C0               hexBytes `json:"c0"`
	C1               hexBytes `json:"c1"`
	ChallengeHash    hexBytes `json:"challengeHash"`
}

func runRecoup(t *testing.T, data []byte) {
	f := decode(t, data, func(g *recoupGroup) []caser { return casers(g.Tests) })
	for _, g := range f.TestGroups {
		mintKey := ed25519.PublicKey(g.MintKey)
		ks, keysets := groupKeyset(t, g.Keyset, g.MintKey)
		sec, err := coin.ParseKeysetSecret(g.KeysetSecret, mintKey)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sec.Keyset().Bytes(), g.Keyset) || !bytes.Equal(sec.Bytes(), g.KeysetSecret) {
			t.Fatal("keyset secret does not match the group's keyset or its encoding")
		}
		// The mint's signers, by denomination key: a row is (key, nonce).
		signers := make(map[[32]byte]*coin.Signer)
		for _, a := range ks.Amounts() {
			s, err := sec.Signer(a)
			if err != nil {
				t.Fatal(err)
			}
			signers[s.Key()] = s
		}
		for i := range g.Tests {
			runRecoupCase(t, ks, keysets, signers, &g.Tests[i])
		}
	}
}

// hashOutcome turns a recomputed hash into the case's outcome: nil if it is
// the row's, errHashMismatch otherwise.
func hashOutcome(h [32]byte, row []byte) error {
	if !bytes.Equal(h[:], row) {
		return errHashMismatch
	}
	return nil
}

func runRecoupCase(t *testing.T, ks *coin.Keyset, keysets coin.KeysetMap, signers map[[32]byte]*coin.Signer, tc *recoupTest) {
	c := &tc.testCase
	w, _ := want(c)
	refused := w != nil && w != errHashMismatch // with an error, at its fault

	// Which sides the case checks, and the values it must give.
	factors := tc.Alpha0 != nil && tc.Beta0 != nil && tc.Alpha1 != nil && tc.Beta1 != nil
	if !factors && (tc.Alpha0 != nil || tc.Beta0 != nil || tc.Alpha1 != nil || tc.Beta1 != nil) {
		t.Errorf("tcId %d: some blinding factors but not all", c.TcID)
	}
	values := 0
	for _, v := range []hexBytes{tc.R0Prime, tc.R1Prime, tc.C0, tc.C1, tc.ChallengeHash} {
		if v != nil {
			values++
		}
	}
	switch {
	case tc.Seed == nil && !factors:
		t.Errorf("tcId %d: checks neither side (no seed, no factors)", c.TcID)
	case c.Result == "valid" && (tc.Seed == nil || !factors):
		t.Errorf("tcId %d: a valid case must check both sides", c.TcID)
	case !refused && (values != 5 || !factors):
		t.Errorf("tcId %d: a case not refused with an error lacks factors or recomputed values", c.TcID)
	case refused && values != 0:
		t.Errorf("tcId %d: a case refused with an error gives values after its fault", c.TcID)
	}

	cn, err := coin.ParseCoin(tc.Coin)
	if err != nil {
		t.Errorf("tcId %d: coin: %v", c.TcID, err)
		return
	}
	eq(t, c, "keysetId", cn.KeysetID[:], tc.KeysetID)
	eq(t, c, "coinPub", cn.Pub[:], tc.CoinPub)
	eq(t, c, "designated", cn.Designated[:], tc.Designated)
	eq(t, c, "msg", cn.Message(), tc.Msg)
	if cn.Amount != tc.Amount {
		t.Errorf("tcId %d: coin amount %d, vector has %d", c.TcID, cn.Amount, tc.Amount)
	}
	nonce, r0, r1 := [32]byte(tc.Nonce), [32]byte(tc.R0), [32]byte(tc.R1)
	var proof coin.RecoupProof
	if factors {
		proof = coin.RecoupProof{
			Nonce: nonce,
			Alpha: [2][32]byte{[32]byte(tc.Alpha0), [32]byte(tc.Alpha1)},
			Beta:  [2][32]byte{[32]byte(tc.Beta0), [32]byte(tc.Beta1)},
		}
	}
	if values == 5 && factors {
		checkRecoupValues(t, tc, &proof)
	}

	// Wallet side: derive the proof from the seed and compare its hash
	// with the row's before sending anything.
	if tc.Seed != nil {
		p, h, err := coin.NewRecoupProof((*[32]byte)(tc.Seed), ks, cn, nonce, r0, r1)
		if err == nil {
			if key, _ := ks.Key(cn.Amount); !bytes.Equal(key[:], tc.PublicKey) {
				t.Errorf("tcId %d: the wallet side succeeds for a coin whose key is not publicKey", c.TcID)
			}
			if factors && p != proof {
				t.Errorf("tcId %d: wallet derives proof %x, vector has %x", c.TcID, p, proof)
			}
			eq(t, c, "wallet's challengeHash", h[:], tc.ChallengeHash)
			if err = hashOutcome(h, tc.RowChallengeHash); err != nil {
				err = fmt.Errorf("wallet: %w", err)
			}
		}
		check(t, c, err)
	}

	// Mint side: the signer of the row's key recomputes the hash from the
	// nonce, the factors and the coin.
	if factors {
		s, ok := signers[[32]byte(tc.PublicKey)]
		if !ok {
			t.Errorf("tcId %d: publicKey is not a key of the group's keyset", c.TcID)
			return
		}
		mr0, mr1 := s.Begin(nonce)
		eq(t, c, "mint's R0", mr0[:], tc.R0)
		eq(t, c, "mint's R1", mr1[:], tc.R1)
		h, err := s.RecoupHash(cn, &proof)
		if err == nil {
			eq(t, c, "mint's challengeHash", h[:], tc.ChallengeHash)
			if err = hashOutcome(h, tc.RowChallengeHash); err != nil {
				err = fmt.Errorf("mint: %w", err)
			}
		}
		check(t, c, err)
	}

	// Recoup leaves the signatures to the spend check: a valid coin and a
	// forged one both pass it, so only the hash tells them apart.
	if c.Result == "valid" || slices.Contains(c.Flags, "ForgedCoin") {
		v := &coin.Verifier{Keysets: keysets, Window: coin.WindowDeposit, AnyDesignation: true}
		if err := v.VerifyCoin(cn, time.Unix(ks.NotBefore, 0)); err != nil {
			t.Errorf("tcId %d: the coin does not verify: %v", c.TcID, err)
		}
		if !bothVerify(tc.PublicKey, tc.Msg, cn.Sig[:]) {
			t.Errorf("tcId %d: the coin's signature fails an Ed25519 rule", c.TcID)
		}
	}
}

// checkRecoupValues recomputes R'_j, c_j and the challenge hash from the
// case's values with the formulas of its header, apart from package coin.
func checkRecoupValues(t *testing.T, tc *recoupTest, p *coin.RecoupProof) {
	t.Helper()
	c := &tc.testCase
	a, err := new(edwards25519.Point).SetBytes(tc.PublicKey)
	if err != nil {
		t.Errorf("tcId %d: publicKey: %v", c.TcID, err)
		return
	}
	var cs [2][32]byte
	for j, r := range []hexBytes{tc.R0, tc.R1} {
		rp, err1 := new(edwards25519.Point).SetBytes(r)
		alpha, err2 := edwards25519.NewScalar().SetCanonicalBytes(p.Alpha[j][:])
		beta, err3 := edwards25519.NewScalar().SetCanonicalBytes(p.Beta[j][:])
		if err1 != nil || err2 != nil || err3 != nil {
			t.Errorf("tcId %d: R%d or its factors do not decode", c.TcID, j)
			return
		}
		rPrime := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(beta, a, alpha)
		rPrime.Add(rPrime, rp)
		eq(t, c, fmt.Sprintf("R%dprime", j), rPrime.Bytes(), []hexBytes{tc.R0Prime, tc.R1Prime}[j])
		hd := sha512.New()
		hd.Write(rPrime.Bytes())
		hd.Write(tc.PublicKey)
		hd.Write(tc.Msg)
		cj, _ := edwards25519.NewScalar().SetUniformBytes(hd.Sum(nil))
		cj.Add(cj, beta)
		copy(cs[j][:], cj.Bytes())
		eq(t, c, fmt.Sprintf("c%d", j), cs[j][:], []hexBytes{tc.C0, tc.C1}[j])
	}
	h := coin.ChallengeHash(cs[0], cs[1])
	eq(t, c, "challengeHash", h[:], tc.ChallengeHash)
}

// TestVectorsCurrent regenerates the vectors and compares them with the
// committed files, so that stale vectors fail.
func TestVectorsCurrent(t *testing.T) {
	files, err := vectorgen.Files()
	if err != nil {
		t.Fatal(err)
	}
	committed, err := fs.Glob(Vectors, "*.json")
	if err != nil {
		t.Fatal(err)
	}
	schemas, _ := fs.Glob(Vectors, "schemas/*.json")
	committed = append(committed, schemas...)
	for _, name := range committed {
		if _, ok := files[name]; !ok {
			t.Errorf("%s is not made by the generator", name)
		}
	}
	for name, want := range files {
		got, err := fs.ReadFile(Vectors, name)
		if err != nil {
			t.Errorf("%s: %v (run go generate ./testvectors)", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the generator's output (run go generate ./testvectors)", name)
		}
	}
}

// TestDocListsFlags makes sure the package documentation names every flag.
func TestDocListsFlags(t *testing.T) {
	src, err := os.ReadFile("testvectors.go")
	if err != nil {
		t.Fatal(err)
	}
	for fl := range flagErrors {
		if !regexp.MustCompile(`\b` + fl + `\b`).Match(src) {
			t.Errorf("package doc does not list flag %s", fl)
		}
	}
}
