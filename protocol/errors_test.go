package protocol

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

func TestCodeSentinelRoundTrip(t *testing.T) {
	_, server := testKey(t, 1)
	for code := range pb.Code_name {
		c := pb.Code(code)
		s := SentinelFor(c)
		if c == pb.Code_OK {
			if s != nil || CodeOf(nil) != pb.Code_OK {
				t.Fatal("OK is not nil")
			}
			continue
		}
		if s == nil {
			t.Fatalf("%s has no sentinel", c)
		}
		if got := CodeOf(s); got != c {
			t.Errorf("CodeOf(%v) = %s, want %s", s, got, c)
		}
		if got := CodeOf(fmt.Errorf("context: %w", s)); got != c {
			t.Errorf("wrapped %v: %s", s, got)
		}
		// Across the wire and back.
		err := DecodeError(EncodeError(&Error{Code: c, Message: "why"}), server)
		if !errors.Is(err, s) {
			t.Errorf("%s: decoded %v is not %v", c, err, s)
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != c || e.Message != "why" {
			t.Errorf("%s: decoded %#v", c, err)
		}
		// A plain wrapped sentinel keeps its code and loses its text.
		m := EncodeError(fmt.Errorf("secret detail: %w", s))
		if m.Code != c || m.Message != "" {
			t.Errorf("%s: encoded %v", c, m)
		}
	}
	// Sentinels are distinct.
	seen := map[error]bool{}
	for _, s := range codeErrs {
		if seen[s] {
			t.Fatalf("%v twice", s)
		}
		seen[s] = true
	}
}

func TestCodeOfOtherErrors(t *testing.T) {
	revoked := fmt.Errorf("%w: %w", coin.ErrUnknownKeyset, ErrRevokedKeyset)
	tests := []struct {
		err  error
		want pb.Code
	}{
		{errors.New("disk on fire"), pb.Code_INTERNAL},
		{fmt.Errorf("%w: body", ErrMalformed), pb.Code_BAD_REQUEST},
		{coin.ErrUnknownKeyset, pb.Code_UNKNOWN_KEYSET},
		{fmt.Errorf("%w: spend window", coin.ErrOutsideWindow), pb.Code_EXPIRED_KEYSET},
		{revoked, pb.Code_REVOKED_KEYSET},
		{coin.ErrBadSignature, pb.Code_INVALID_COIN},
		{coin.ErrBadKey, pb.Code_INVALID_COIN},
		{coin.ErrDesignated, pb.Code_INVALID_COIN},
		{coin.ErrAmount, pb.Code_INVALID_COIN},
		{coin.ErrMalformed, pb.Code_INVALID_COIN},
		{&coin.BatchError{Errs: []error{nil, coin.ErrBadSignature}}, pb.Code_INVALID_COIN},
		{&Error{Code: pb.Code_NO_SPACE}, pb.Code_NO_SPACE},
		{&Error{}, pb.Code_INTERNAL},
		{&Error{Code: 99}, pb.Code_INTERNAL},
		{fmt.Errorf("%w: %w", ErrNotFound, coin.ErrBadSignature), pb.Code_NOT_FOUND},
	}
	for _, tt := range tests {
		if got := CodeOf(tt.err); got != tt.want {
			t.Errorf("CodeOf(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

func TestPaymentRequiredRoundTrip(t *testing.T) {
	key, server := testKey(t, 1)
	_, other := testKey(t, 2)
	ss := testScheduleFor(t, key, server)
	sent := &Error{
		Code:    pb.Code_PAYMENT_REQUIRED,
		Message: "schedule expired",
		Payment: &PaymentRequired{Schedule: ss, Quote: 1234, Message: "prices rose"},
	}
	m := EncodeError(fmt.Errorf("handler: %w", sent))
	err := DecodeError(m, server)
	if !errors.Is(err, ErrPaymentRequired) {
		t.Fatalf("not payment required: %v", err)
	}
	var pr *Error
	if !errors.As(err, &pr) || pr.Payment == nil {
		t.Fatalf("no payment: %#v", err)
	}
	p := pr.Payment
	if p.Quote != 1234 || p.Message != "prices rose" || p.Schedule.ID() != ss.ID() || p.Schedule.Schedule != ss.Schedule {
		t.Fatalf("payment %+v", p)
	}
	if s := err.Error(); !strings.Contains(s, "protocol: payment required") || !strings.Contains(s, "1234 msat") {
		t.Errorf("text %q", s)
	}
	// The schedule must come from the server that answered.
	if err := DecodeError(m, other); !errors.Is(err, ErrBadSchedule) || errors.Is(err, ErrPaymentRequired) {
		t.Fatalf("other server: %v", err)
	}
	m.PaymentRequired.Schedule.Signature[0] ^= 1
	if err := DecodeError(m, server); !errors.Is(err, ErrBadSchedule) {
		t.Fatalf("bad signature: %v", err)
	}
}

func TestErrorText(t *testing.T) {
	long := strings.Repeat("é", MaxErrorMessage)
	m := EncodeError(&Error{Code: pb.Code_BAD_REQUEST, Message: long})
	if len(m.Message) > MaxErrorMessage || !strings.HasPrefix(long, m.Message) {
		t.Fatalf("message is %d bytes", len(m.Message))
	}
	err := DecodeError(&pb.Error{Code: pb.Code_NOT_FOUND, Message: "line\nbreak\x1b[31m"}, "")
	if s := err.Error(); strings.ContainsAny(s, "\n\x1b") || s != `protocol: not found: "line\nbreak\x1b[31m"` {
		t.Errorf("remote text not quoted: %q", s)
	}
	err = DecodeError(&pb.Error{Code: 77}, "")
	if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "code 77") {
		t.Errorf("unknown code: %v", err)
	}
	if DecodeError(nil, "") != nil || DecodeError(&pb.Error{Message: "fine"}, "") != nil || EncodeError(nil) != nil {
		t.Error("OK is an error")
	}
}
