package protocol

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/scripnet/scrip/protocol/pb"
)

func TestOutcomeOf(t *testing.T) {
	tests := []struct {
		err  error
		want Outcome
	}{
		{nil, OutcomeSpent},
		{&Error{Code: pb.Code_PAYMENT_REQUIRED}, OutcomeRefused},
		{fmt.Errorf("wrapped: %w", &Error{Code: pb.Code_DOUBLE_SPEND}), OutcomeRefused},
		{&Error{Code: pb.Code_NO_SPACE}, OutcomeRefused},
		{&Error{Code: pb.Code_NOT_FOUND}, OutcomeRefused},
		{&Error{Code: pb.Code_INTERNAL}, OutcomeUnknown},
		{network.ErrReset, OutcomeUnknown},
		{context.DeadlineExceeded, OutcomeUnknown},
		{fmt.Errorf("%w (in a PAYMENT_REQUIRED answer)", ErrBadSchedule), OutcomeUnknown},
	}
	for _, tc := range tests {
		if got := OutcomeOf(tc.err); got != tc.want {
			t.Errorf("OutcomeOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	for o, s := range map[Outcome]string{OutcomeSpent: "spent", OutcomeRefused: "refused", OutcomeUnknown: "unknown", 0: "invalid"} {
		if o.String() != s {
			t.Errorf("%d is %q", o, o.String())
		}
	}
}

func TestPayComputed(t *testing.T) {
	reason := &Error{Code: pb.Code_PAYMENT_REQUIRED}
	if err := PayComputed(context.Background(), &Offer{Quote: 8, Computed: 8, Reason: reason}); err != nil {
		t.Fatal(err)
	}
	if err := PayComputed(context.Background(), &Offer{Quote: 7, Computed: 8, Reason: reason}); err != nil {
		t.Fatal(err)
	}
	err := PayComputed(context.Background(), &Offer{Quote: 9, Computed: 8, Reason: reason})
	if !errors.Is(err, ErrGaveUp) || !errors.Is(err, ErrPaymentRequired) {
		t.Fatalf("got %v", err)
	}
}

func TestTransportFailure(t *testing.T) {
	for _, err := range []error{network.ErrReset, fmt.Errorf("protocol: reading response: %w", ErrTruncated)} {
		if !transportFailure(err) {
			t.Errorf("%v is a transport failure", err)
		}
	}
	for _, err := range []error{&Error{Code: pb.Code_INTERNAL}, ErrFrameTooLarge, ErrBadSchedule, ErrUnknownProtocol} {
		if transportFailure(err) {
			t.Errorf("%v is not a transport failure", err)
		}
	}
}

func TestNewResourceManager(t *testing.T) {
	rm, err := NewResourceManager(map[string]ProtocolLimits{StorageID: {Streams: 10, PeerStreams: 2, Memory: 1 << 20, PeerMemory: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	rm.Close()
	if _, err := NewResourceManager(map[string]ProtocolLimits{"/other/1.0.0": {}}); !errors.Is(err, ErrUnknownProtocol) {
		t.Fatalf("got %v", err)
	}
	for _, id := range []string{StorageID, MintID} {
		if l := DefaultLimits(id); l.PeerStreams == 0 || l.Streams < l.PeerStreams || l.PeerMemory < MaxStorageRequestSize && id == StorageID {
			t.Fatalf("%s: %+v", id, l)
		}
	}
}
