package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/protocol/pb"
)

// strictReader serves b but fails the test if asked for bytes past limit
// while more remain: it proves that a refused frame's body is never read.
type strictReader struct {
	t     testing.TB
	r     *bytes.Reader
	limit int
	read  int
}

func (s *strictReader) Read(p []byte) (int, error) {
	if s.read >= s.limit && s.r.Len() > 0 {
		s.t.Fatalf("read past byte %d", s.limit)
	}
	if len(p) > s.limit-s.read && s.r.Len() > 0 {
		p = p[:s.limit-s.read]
	}
	n, err := s.r.Read(p)
	s.read += n
	return n, err
}

func uvarint(x uint64) []byte { return binary.AppendUvarint(nil, x) }

func TestReadFrame(t *testing.T) {
	const max = 100
	body := bytes.Repeat([]byte{0xab}, max)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name string
		in   []byte
		// limit is how many bytes the reader may hand out; 0 means all.
		limit int
		want  []byte
		err   error
	}{
		{"empty frame", uvarint(0), 0, []byte{}, nil},
		{"one byte", cat(uvarint(1), []byte{7}), 0, []byte{7}, nil},
		{"at cap", cat(uvarint(max), body), 0, body, nil},
		{"trailing bytes left unread", cat(uvarint(1), []byte{7, 8, 9}), 2, []byte{7}, nil},
		{"over cap", cat(uvarint(max+1), body, []byte{0}), 1, nil, ErrFrameTooLarge},
		{"lying prefix", cat(uvarint(1<<40), body), 6, nil, ErrFrameTooLarge},
		{"largest prefix", cat(uvarint(1<<64-1), body), 10, nil, ErrFrameTooLarge},
		{"no frame", nil, 0, nil, io.EOF},
		{"truncated prefix", []byte{0x80}, 0, nil, ErrTruncated},
		{"truncated body", cat(uvarint(10), body[:9]), 0, nil, ErrTruncated},
		{"empty body", uvarint(10), 0, nil, io.ErrUnexpectedEOF},
		{"non-minimal prefix", []byte{0x81, 0x00, 1}, 2, nil, ErrMalformed},
		{"non-minimal zero", []byte{0x80, 0x00}, 2, nil, ErrMalformed},
		{"prefix over 64 bits", bytes.Repeat([]byte{0xff}, 9), 0, nil, ErrTruncated},
		{"prefix bit 64", cat(bytes.Repeat([]byte{0xff}, 9), []byte{0x02}), 10, nil, ErrMalformed},
		{"prefix 11 bytes", cat(bytes.Repeat([]byte{0x80}, 10), []byte{1}), 10, nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := tt.limit
			if limit == 0 {
				limit = len(tt.in)
			}
			got, err := ReadFrame(&strictReader{t: t, r: bytes.NewReader(tt.in), limit: limit}, max)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("got %x, want %x", got, tt.want)
			}
		})
	}
	// An empty stream is truncated too.
	if _, err := ReadFrame(bytes.NewReader(nil), max); !errors.Is(err, ErrTruncated) {
		t.Fatalf("empty stream: %v", err)
	}
}

func TestWriteFrame(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, make([]byte, 11), 10); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("over cap: %v", err)
	}
	if buf.Len() != 0 {
		t.Fatal("wrote an oversize frame")
	}
	for _, n := range []int{0, 1, 127, 128, 300, 1 << 14} {
		buf.Reset()
		b := bytes.Repeat([]byte{byte(n)}, n)
		if err := WriteFrame(&buf, b, n); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != len(uvarint(uint64(n)))+n {
			t.Fatalf("n=%d: frame is %d bytes", n, buf.Len())
		}
		got, err := ReadFrame(&buf, n)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("n=%d: round trip: %v", n, err)
		}
	}
}

func TestMsgRoundTrip(t *testing.T) {
	req := &pb.Request{Body: []byte("body"), Spends: [][]byte{make([]byte, 264)}}
	var buf bytes.Buffer
	if err := WriteMsg(&buf, req, proto.Size(req)-1); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("over cap: %v", err)
	}
	if err := WriteMsg(&buf, req, proto.Size(req)); err != nil {
		t.Fatal(err)
	}
	got := new(pb.Request)
	if err := ReadMsg(&buf, got, proto.Size(req)); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, req) {
		t.Fatalf("got %v", got)
	}
	// A frame whose body is not a Request.
	buf.Reset()
	WriteFrame(&buf, []byte{0x0a, 0x05, 1}, 10)
	if err := ReadMsg(&buf, got, 10); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad body: %v", err)
	}
}

// frameSeeds are real frames: requests and responses as sent.
func frameSeeds(t testing.TB) [][]byte {
	ss := testSchedule(t)
	msgs := []proto.Message{
		&pb.Request{},
		&pb.Request{Body: mustMarshal(t, &pb.StorageRequest{
			RequestId: make([]byte, RequestIDSize),
			Op:        &pb.StorageRequest_Read{Read: &pb.Read{StorageIndex: make([]byte, StorageIndexSize), Length: 1000}},
		}), Spends: [][]byte{make([]byte, 264), make([]byte, 264)}},
		&pb.Response{Body: []byte("share data")},
		&pb.Response{Error: EncodeError(&Error{Code: pb.Code_PAYMENT_REQUIRED, Payment: &PaymentRequired{Schedule: ss, Quote: 17}})},
	}
	var seeds [][]byte
	for _, m := range msgs {
		var buf bytes.Buffer
		if err := WriteMsg(&buf, m, MaxStorageRequestSize); err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, buf.Bytes())
	}
	return seeds
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzReadFrame checks that ReadFrame never reads past a frame, never
// accepts more than the cap, and that what it accepts re-encodes to the
// same bytes.
func FuzzReadFrame(f *testing.F) {
	seeds := frameSeeds(f)
	if len(seeds) == 0 {
		f.Fatal("no seeds")
	}
	for _, s := range seeds {
		f.Add(s, uint16(len(s)))
		f.Add(s, uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, in []byte, max uint16) {
		r := bytes.NewReader(in)
		b, err := ReadFrame(r, int(max))
		if err != nil {
			if !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(b) > int(max) {
			t.Fatalf("accepted %d bytes over cap %d", len(b), max)
		}
		consumed := len(in) - r.Len()
		var buf bytes.Buffer
		if err := WriteFrame(&buf, b, int(max)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), in[:consumed]) {
			t.Fatalf("re-encoded %x, read %x", buf.Bytes(), in[:consumed])
		}
	})
}
