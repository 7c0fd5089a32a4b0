package protocol

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// Domain tags of schedules.
const (
	tagSchedule    = "scrip/v1/schedule\x00"
	tagScheduleSig = "scrip/v1/schedule-sig\x00"
)

// maxUnixSeconds is the end of year 9999 UTC, the latest time a schedule
// may name.
const maxUnixSeconds = 253402300799

// Schedule is a server's price list for one validity window. Times are
// whole seconds; the window includes both ends.
type Schedule struct {
	// Server is the peer whose key signs the schedule. Its public key must
	// be extractable from the peer ID (Ed25519, libp2p's default, or
	// secp256k1).
	Server peer.ID
	// NotBefore and NotAfter bound the validity window.
	NotBefore time.Time
	NotAfter  time.Time
	// Unit is the unit of every amount in Rates, as a keyset names it.
	Unit string
	// Rates are the prices.
	Rates Rates
}

// Check reports whether s is valid at now: NotBefore ≤ now ≤ NotAfter in
// whole seconds. It returns nil or an error wrapping [ErrStaleSchedule].
func (s *Schedule) Check(now time.Time) error {
	t := now.Unix()
	if t < s.NotBefore.Unix() {
		return fmt.Errorf("%w: valid from %d, now %d", ErrStaleSchedule, s.NotBefore.Unix(), t)
	}
	if t > s.NotAfter.Unix() {
		return fmt.Errorf("%w: expired at %d, now %d", ErrStaleSchedule, s.NotAfter.Unix(), t)
	}
	return nil
}

// toPB checks s and returns its wire form.
func (s *Schedule) toPB() (*pb.Schedule, error) {
	if err := s.Server.Validate(); err != nil {
		return nil, fmt.Errorf("%w: server: %w", ErrBadSchedule, err)
	}
	nb, na := s.NotBefore.Unix(), s.NotAfter.Unix()
	if nb < 0 || na < nb || na > maxUnixSeconds {
		return nil, fmt.Errorf("%w: window %d..%d", ErrBadSchedule, nb, na)
	}
	if err := checkUnit(s.Unit); err != nil {
		return nil, err
	}
	return &pb.Schedule{
		Server:           []byte(s.Server),
		NotBefore:        uint64(nb),
		NotAfter:         uint64(na),
		Unit:             s.Unit,
		PerCall:          s.Rates.PerCall,
		StorePerGibMonth: s.Rates.StorePerGiBMonth,
		ReadPerGib:       s.Rates.ReadPerGiB,
		WritePerGib:      s.Rates.WritePerGiB,
	}, nil
}

// scheduleFromPB checks m and returns it as a Schedule.
func scheduleFromPB(m *pb.Schedule) (Schedule, error) {
	id, err := peer.IDFromBytes(m.Server)
	if err != nil {
		return Schedule{}, fmt.Errorf("%w: server: %w", ErrBadSchedule, err)
	}
	if m.NotAfter < m.NotBefore || m.NotAfter > maxUnixSeconds {
		return Schedule{}, fmt.Errorf("%w: window %d..%d", ErrBadSchedule, m.NotBefore, m.NotAfter)
	}
	if err := checkUnit(m.Unit); err != nil {
		return Schedule{}, err
	}
	return Schedule{
		Server:    id,
		NotBefore: time.Unix(int64(m.NotBefore), 0).UTC(),
		NotAfter:  time.Unix(int64(m.NotAfter), 0).UTC(),
		Unit:      m.Unit,
		Rates: Rates{
			PerCall:          m.PerCall,
			StorePerGiBMonth: m.StorePerGibMonth,
			ReadPerGiB:       m.ReadPerGib,
			WritePerGiB:      m.WritePerGib,
		},
	}, nil
}

// checkUnit applies the keyset rule for unit names ([coin.CheckUnit]),
// answering with [ErrBadSchedule].
func checkUnit(u string) error {
	if err := coin.CheckUnit(u); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSchedule, err) // %v: its class is ErrBadSchedule only
	}
	return nil
}

// SignedSchedule is a schedule signed by its server. Every SignedSchedule
// this package returns has been signed or verified under Server's key, so
// holding one means the server published it; the zero value is not valid.
type SignedSchedule struct {
	Schedule
	enc []byte // the serialized pb.Schedule exactly as signed
	sig []byte
	id  [ScheduleIDSize]byte
}

// ID returns the schedule ID, SHA-256("scrip/v1/schedule\x00" || schedule
// bytes), which a paid request names in its schedule_id.
func (s *SignedSchedule) ID() [ScheduleIDSize]byte { return s.id }

// PB returns the wire form of s, a fresh message the caller may keep.
func (s *SignedSchedule) PB() *pb.SignedSchedule {
	return &pb.SignedSchedule{
		Schedule:  append([]byte(nil), s.enc...),
		Signature: append([]byte(nil), s.sig...),
	}
}

// Bytes returns the serialized pb.SignedSchedule, which [ParseSignedSchedule]
// reads.
func (s *SignedSchedule) Bytes() []byte {
	b, err := proto.Marshal(s.PB())
	if err != nil {
		panic("protocol: marshalling a schedule: " + err.Error())
	}
	return b
}

func scheduleSigMessage(enc []byte) []byte {
	return append([]byte(tagScheduleSig), enc...)
}

func scheduleID(enc []byte) [ScheduleIDSize]byte {
	h := sha256.New()
	h.Write([]byte(tagSchedule))
	h.Write(enc)
	return [ScheduleIDSize]byte(h.Sum(nil))
}

// SignSchedule signs s with key, the private key of s.Server. The result
// holds s as encoded: sub-second parts of its times are dropped.
func SignSchedule(key crypto.PrivKey, s Schedule) (*SignedSchedule, error) {
	if !s.Server.MatchesPrivateKey(key) {
		return nil, fmt.Errorf("%w: key is not the server's", ErrBadSchedule)
	}
	if _, err := s.Server.ExtractPublicKey(); err != nil {
		return nil, fmt.Errorf("%w: server key not in its peer ID: %w", ErrBadSchedule, err)
	}
	m, err := s.toPB()
	if err != nil {
		return nil, err
	}
	enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSchedule, err)
	}
	sig, err := key.Sign(scheduleSigMessage(enc))
	if err != nil {
		return nil, fmt.Errorf("protocol: signing schedule: %w", err)
	}
	if proto.Size(&pb.SignedSchedule{Schedule: enc, Signature: sig}) > MaxScheduleSize {
		return nil, fmt.Errorf("%w: over %d bytes", ErrBadSchedule, MaxScheduleSize)
	}
	return verifyEncoded(enc, sig, s.Server)
}

// VerifySchedule checks a received signed schedule and returns it parsed.
// The schedule must be a canonical encoding (what a deterministic
// protobuf encoder writes, with no unknown fields: a client must not pay
// under prices it cannot read), name server (or any server, if server is
// empty) and carry that server's valid signature. The validity window is
// not checked; see [Schedule.Check]. Errors wrap [ErrBadSchedule].
func VerifySchedule(m *pb.SignedSchedule, server peer.ID) (*SignedSchedule, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: missing", ErrBadSchedule)
	}
	if proto.Size(m) > MaxScheduleSize {
		return nil, fmt.Errorf("%w: over %d bytes", ErrBadSchedule, MaxScheduleSize)
	}
	return verifyEncoded(append([]byte(nil), m.Schedule...), append([]byte(nil), m.Signature...), server)
}

// ParseSignedSchedule decodes a serialized pb.SignedSchedule of at most
// [MaxScheduleSize] bytes and verifies it as [VerifySchedule] does.
func ParseSignedSchedule(b []byte, server peer.ID) (*SignedSchedule, error) {
	if len(b) > MaxScheduleSize {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrBadSchedule, len(b), MaxScheduleSize)
	}
	m := new(pb.SignedSchedule)
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSchedule, err)
	}
	return VerifySchedule(m, server)
}

// verifyEncoded parses enc, checks that it is canonical and names server,
// and verifies sig. It keeps enc and sig.
func verifyEncoded(enc, sig []byte, server peer.ID) (*SignedSchedule, error) {
	m := new(pb.Schedule)
	if err := proto.Unmarshal(enc, m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSchedule, err)
	}
	if len(m.ProtoReflect().GetUnknown()) != 0 {
		return nil, fmt.Errorf("%w: unknown fields", ErrBadSchedule)
	}
	again, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil || string(again) != string(enc) {
		return nil, fmt.Errorf("%w: not canonical", ErrBadSchedule)
	}
	s, err := scheduleFromPB(m)
	if err != nil {
		return nil, err
	}
	if server != "" && s.Server != server {
		return nil, fmt.Errorf("%w: signed for another server", ErrBadSchedule)
	}
	pub, err := s.Server.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: server key not in its peer ID: %w", ErrBadSchedule, err)
	}
	if ok, err := pub.Verify(scheduleSigMessage(enc), sig); err != nil || !ok {
		return nil, fmt.Errorf("%w: bad signature", ErrBadSchedule)
	}
	return &SignedSchedule{Schedule: s, enc: enc, sig: sig, id: scheduleID(enc)}, nil
}
