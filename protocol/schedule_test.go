package protocol

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/protocol/pb"
)

var t0 = time.Unix(1_800_000_000, 0).UTC()

// testKey returns a deterministic Ed25519 libp2p key and its peer ID.
func testKey(t testing.TB, seed byte) (crypto.PrivKey, peer.ID) {
	t.Helper()
	var s [32]byte
	s[0] = seed
	key, _, err := crypto.GenerateEd25519Key(rand.NewChaCha8(s))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return key, id
}

func testScheduleFor(t testing.TB, key crypto.PrivKey, id peer.ID) *SignedSchedule {
	t.Helper()
	ss, err := SignSchedule(key, Schedule{
		Server:    id,
		NotBefore: t0,
		NotAfter:  t0.Add(time.Hour),
		Unit:      "msat",
		Rates:     Rates{PerCall: 10, StorePerGiBMonth: 50_000, ReadPerGiB: 2_000, WritePerGiB: 1_000},
	})
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

func testSchedule(t testing.TB) *SignedSchedule {
	key, id := testKey(t, 1)
	return testScheduleFor(t, key, id)
}

func TestScheduleSignVerify(t *testing.T) {
	key, id := testKey(t, 1)
	ss := testScheduleFor(t, key, id)
	for _, server := range []peer.ID{id, ""} {
		got, err := ParseSignedSchedule(ss.Bytes(), server)
		if err != nil {
			t.Fatal(err)
		}
		if got.Schedule != ss.Schedule || got.ID() != ss.ID() {
			t.Fatalf("parsed %+v, signed %+v", got.Schedule, ss.Schedule)
		}
	}
	if got := scheduleID(ss.PB().Schedule); got != ss.ID() {
		t.Fatal("ID is not the hash of the schedule bytes")
	}
	// Signing drops sub-second parts.
	s := ss.Schedule
	s.NotAfter = s.NotAfter.Add(500 * time.Millisecond)
	again, err := SignSchedule(key, s)
	if err != nil || again.ID() != ss.ID() || again.Schedule != ss.Schedule {
		t.Fatalf("sub-second times: %v", err)
	}
}

func TestScheduleSignRefuses(t *testing.T) {
	key, id := testKey(t, 1)
	_, other := testKey(t, 2)
	good := Schedule{Server: id, NotBefore: t0, NotAfter: t0, Unit: "msat"}
	tests := []struct {
		name string
		edit func(*Schedule)
	}{
		{"other server", func(s *Schedule) { s.Server = other }},
		{"no server", func(s *Schedule) { s.Server = "" }},
		{"window reversed", func(s *Schedule) { s.NotAfter = t0.Add(-time.Second) }},
		{"before 1970", func(s *Schedule) { s.NotBefore = time.Unix(-1, 0) }},
		{"after 9999", func(s *Schedule) { s.NotAfter = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"no unit", func(s *Schedule) { s.Unit = "" }},
		{"long unit", func(s *Schedule) { s.Unit = string(bytes.Repeat([]byte("u"), 33)) }},
		{"unit character", func(s *Schedule) { s.Unit = "m sat" }},
	}
	if _, err := SignSchedule(key, good); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.edit(&s)
			if _, err := SignSchedule(key, s); !errors.Is(err, ErrBadSchedule) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	// A peer ID that hashes its key (RSA, say) cannot sign: clients could
	// not check it.
	hashed := peer.ID(append([]byte{0x12, 0x20}, bytes.Repeat([]byte{1}, 32)...))
	s := good
	s.Server = hashed
	if _, err := SignSchedule(key, s); !errors.Is(err, ErrBadSchedule) {
		t.Fatalf("hashed peer ID: %v", err)
	}
}

func TestScheduleTamper(t *testing.T) {
	key, id := testKey(t, 1)
	_, other := testKey(t, 2)
	ss := testScheduleFor(t, key, id)
	sign := func(enc []byte) []byte {
		sig, err := key.Sign(scheduleSigMessage(enc))
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	enc := ss.PB().Schedule
	m := new(pb.Schedule)
	if err := proto.Unmarshal(enc, m); err != nil {
		t.Fatal(err)
	}
	reencode := func(edit func(*pb.Schedule)) []byte {
		c := proto.Clone(m).(*pb.Schedule)
		edit(c)
		return mustMarshal(t, c)
	}
	flipped := bytes.Clone(enc)
	flipped[len(flipped)-1] ^= 1
	badSig := ss.PB().Signature
	badSig[0] ^= 1
	unknown := protowire.AppendTag(bytes.Clone(enc), 99, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 1)
	// Field 2 written twice: decodes to the same message, not canonical.
	dup := protowire.AppendTag(bytes.Clone(enc), 2, protowire.VarintType)
	dup = protowire.AppendVarint(dup, m.NotBefore)
	tests := []struct {
		name   string
		m      *pb.SignedSchedule
		server peer.ID
	}{
		{"nil", nil, id},
		{"another server expected", ss.PB(), other},
		{"byte flipped", &pb.SignedSchedule{Schedule: flipped, Signature: ss.PB().Signature}, id},
		{"signature flipped", &pb.SignedSchedule{Schedule: enc, Signature: badSig}, id},
		{"no signature", &pb.SignedSchedule{Schedule: enc, Signature: []byte{}}, id},
		{"price raised, old signature", &pb.SignedSchedule{
			Schedule: reencode(func(s *pb.Schedule) { s.PerCall++ }), Signature: ss.PB().Signature}, id},
		{"signed by another key", &pb.SignedSchedule{
			Schedule: reencode(func(s *pb.Schedule) { s.Server = []byte(other) }), Signature: ss.PB().Signature}, ""},
		{"unknown field, signed", &pb.SignedSchedule{Schedule: unknown, Signature: sign(unknown)}, id},
		{"not canonical, signed", &pb.SignedSchedule{Schedule: dup, Signature: sign(dup)}, id},
		{"bad server bytes, signed", &pb.SignedSchedule{
			Schedule: reencode(func(s *pb.Schedule) { s.Server = []byte{1, 2, 3} })}, ""},
		{"window reversed, signed", &pb.SignedSchedule{
			Schedule: reencode(func(s *pb.Schedule) { s.NotAfter = s.NotBefore - 1 })}, id},
		{"oversize", &pb.SignedSchedule{Schedule: enc, Signature: make([]byte, MaxScheduleSize)}, id},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.m != nil && tt.m.Signature == nil {
				tt.m.Signature = sign(tt.m.Schedule)
			}
			if _, err := VerifySchedule(tt.m, tt.server); !errors.Is(err, ErrBadSchedule) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	if _, err := ParseSignedSchedule(make([]byte, MaxScheduleSize+1), id); !errors.Is(err, ErrBadSchedule) {
		t.Fatalf("oversize bytes: %v", err)
	}
	if _, err := ParseSignedSchedule([]byte{0xff}, id); !errors.Is(err, ErrBadSchedule) {
		t.Fatalf("garbage: %v", err)
	}
}

func TestScheduleCheck(t *testing.T) {
	ss := testSchedule(t) // valid t0 .. t0+1h inclusive
	tests := []struct {
		at time.Time
		ok bool
	}{
		{t0.Add(-time.Second), false},
		{t0.Add(-time.Nanosecond), false},
		{t0, true},
		{t0.Add(time.Hour), true},
		{t0.Add(time.Hour + 999*time.Millisecond), true},
		{t0.Add(time.Hour + time.Second), false},
	}
	for _, tt := range tests {
		err := ss.Check(tt.at)
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrStaleSchedule) {
			t.Errorf("at %v: %v", tt.at.Sub(t0), err)
		}
	}
}

// FuzzParseSignedSchedule checks that the parser never panics, that what it
// accepts is canonical (its encoding parses to the same schedule and ID),
// and that it accepts nothing for a server other than the one expected.
func FuzzParseSignedSchedule(f *testing.F) {
	key, id := testKey(f, 1)
	seeds := [][]byte{testScheduleFor(f, key, id).Bytes()}
	s := testScheduleFor(f, key, id).Schedule
	s.Rates = Rates{}
	s.Unit = "x"
	zero, err := SignSchedule(key, s)
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, zero.Bytes())
	if len(seeds) == 0 {
		f.Fatal("no seeds")
	}
	for _, b := range seeds {
		f.Add(b)
	}
	_, other := testKey(f, 2)
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := ParseSignedSchedule(b, "")
		if err != nil {
			if !errors.Is(err, ErrBadSchedule) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		again, err := ParseSignedSchedule(ss.Bytes(), ss.Server)
		if err != nil || again.Schedule != ss.Schedule || again.ID() != ss.ID() {
			t.Fatalf("re-parse: %v", err)
		}
		if !bytes.Equal(ss.PB().Schedule, again.PB().Schedule) {
			t.Fatal("schedule bytes changed")
		}
		if ss.Server != other {
			if _, err := ParseSignedSchedule(b, other); err == nil {
				t.Fatal("accepted for another server")
			}
		}
	})
}
