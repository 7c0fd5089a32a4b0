package protocol

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// Sentinel errors. The first group names the error codes a peer answers
// with, one per [pb.Code] but OK; an answer received from a peer is an
// *[Error] that matches its code's sentinel under [errors.Is]. The second
// group names failures found on this side.
var (
	// ErrBadRequest reports a request that is malformed or not allowed: a
	// body that does not decode, a field out of range, a reused request ID
	// with another body.
	ErrBadRequest = errors.New("protocol: bad request")
	// ErrPaymentRequired reports a call that was not paid under the server's
	// current schedule: no payment, or a stale or unknown schedule. The
	// answer carries the current schedule and the exact quote.
	ErrPaymentRequired = errors.New("protocol: payment required")
	// ErrInsufficientPayment reports coins that sum to less than the quote.
	ErrInsufficientPayment = errors.New("protocol: insufficient payment")
	// ErrDoubleSpend reports a coin already spent on another request.
	ErrDoubleSpend = errors.New("protocol: double spend")
	// ErrUnknownKeyset reports a coin of a keyset the peer does not know.
	ErrUnknownKeyset = errors.New("protocol: unknown keyset")
	// ErrExpiredKeyset reports a coin of a keyset outside the window the
	// call needs (spend at a server, deposit at the mint).
	ErrExpiredKeyset = errors.New("protocol: expired keyset")
	// ErrRevokedKeyset reports a coin of a revoked keyset.
	ErrRevokedKeyset = errors.New("protocol: revoked keyset")
	// ErrInvalidCoin reports a coin or spend that fails verification. It
	// does not say which check failed.
	ErrInvalidCoin = errors.New("protocol: invalid coin")
	// ErrNoSpace reports a server without room for an allocation.
	ErrNoSpace = errors.New("protocol: no space")
	// ErrNotFound reports a share, allocation or record that does not exist.
	ErrNotFound = errors.New("protocol: not found")
	// ErrRateLimited reports a peer that asks too often; retry later.
	ErrRateLimited = errors.New("protocol: rate limited")
	// ErrInternal reports a failure inside the peer, and stands for any code
	// this version does not know.
	ErrInternal = errors.New("protocol: internal error")

	// ErrFrameTooLarge reports a frame whose length prefix is above the
	// message cap. The frame is refused before its body is read.
	ErrFrameTooLarge = errors.New("protocol: frame too large")
	// ErrTruncated reports a stream that ended inside a frame, or before it.
	ErrTruncated = errors.New("protocol: truncated frame")
	// ErrMalformed reports a length prefix that is not a minimal uvarint, or
	// a message that does not decode. A handler that returns it answers
	// BAD_REQUEST.
	ErrMalformed = errors.New("protocol: malformed message")
	// ErrUnknownProtocol reports a protocol ID that is not a scrip protocol.
	ErrUnknownProtocol = errors.New("protocol: unknown protocol ID")
	// ErrNotSent marks a [Call] that failed before any byte of its request
	// left: no stream to the peer could be opened (it could not be
	// dialled, or refused the stream). The peer has not seen the request,
	// so the call changed nothing there.
	ErrNotSent = errors.New("protocol: request not sent")
	// ErrBadSchedule reports a signed schedule that is malformed, not
	// canonical, not from the expected server or badly signed.
	ErrBadSchedule = errors.New("protocol: bad schedule")
	// ErrStaleSchedule reports a schedule used outside its validity window.
	ErrStaleSchedule = errors.New("protocol: schedule not valid now")
	// ErrPriceOverflow reports a price above the largest uint64.
	ErrPriceOverflow = errors.New("protocol: price overflows uint64")
)

// codeErrs maps each code to its sentinel.
var codeErrs = [...]error{
	pb.Code_OK:                   nil,
	pb.Code_BAD_REQUEST:          ErrBadRequest,
	pb.Code_PAYMENT_REQUIRED:     ErrPaymentRequired,
	pb.Code_INSUFFICIENT_PAYMENT: ErrInsufficientPayment,
	pb.Code_DOUBLE_SPEND:         ErrDoubleSpend,
	pb.Code_UNKNOWN_KEYSET:       ErrUnknownKeyset,
	pb.Code_EXPIRED_KEYSET:       ErrExpiredKeyset,
	pb.Code_REVOKED_KEYSET:       ErrRevokedKeyset,
	pb.Code_INVALID_COIN:         ErrInvalidCoin,
	pb.Code_NO_SPACE:             ErrNoSpace,
	pb.Code_NOT_FOUND:            ErrNotFound,
	pb.Code_RATE_LIMITED:         ErrRateLimited,
	pb.Code_INTERNAL:             ErrInternal,
}

// otherErrs maps errors of this package and of package coin that are not
// code sentinels to codes. Order matters: an error matching several (a
// keyset lookup that failed because the keyset is revoked wraps both
// ErrRevokedKeyset and coin.ErrUnknownKeyset) takes the first code; the
// code sentinels are tried before this list.
var otherErrs = []struct {
	err  error
	code pb.Code
}{
	{ErrMalformed, pb.Code_BAD_REQUEST},
	{coin.ErrUnknownKeyset, pb.Code_UNKNOWN_KEYSET},
	{coin.ErrOutsideWindow, pb.Code_EXPIRED_KEYSET},
	{coin.ErrMalformed, pb.Code_INVALID_COIN},
	{coin.ErrBadKey, pb.Code_INVALID_COIN},
	{coin.ErrBadSignature, pb.Code_INVALID_COIN},
	{coin.ErrDesignated, pb.Code_INVALID_COIN},
	{coin.ErrAmount, pb.Code_INVALID_COIN},
}

// SentinelFor returns the sentinel error of code: nil for OK and
// [ErrInternal] for a code this version does not know.
func SentinelFor(code pb.Code) error {
	if code >= 0 && int(code) < len(codeErrs) {
		return codeErrs[code]
	}
	return ErrInternal
}

// CodeOf returns the code that answers err: OK for nil, the code of an
// *[Error], the code of the first sentinel err matches (the code sentinels
// above, then [ErrMalformed] as BAD_REQUEST, then package coin's errors:
// coin.ErrUnknownKeyset as UNKNOWN_KEYSET, coin.ErrOutsideWindow as
// EXPIRED_KEYSET and every other verification failure as INVALID_COIN), and
// INTERNAL for anything else.
func CodeOf(err error) pb.Code {
	if err == nil {
		return pb.Code_OK
	}
	if e, ok := errors.AsType[*Error](err); ok {
		if e.Code == pb.Code_OK || SentinelFor(e.Code) == ErrInternal {
			return pb.Code_INTERNAL
		}
		return e.Code
	}
	for code, s := range codeErrs {
		if s != nil && errors.Is(err, s) {
			return pb.Code(code)
		}
	}
	for _, o := range otherErrs {
		if errors.Is(err, o.err) {
			return o.code
		}
	}
	return pb.Code_INTERNAL
}

// Error is an error answer: one received from a peer, or one a handler
// returns to be sent as it is. errors.Is(err, s) holds for the sentinel s
// of its code (see [SentinelFor]).
type Error struct {
	// Code classifies the error. The zero value, OK, is not an error and is
	// sent as INTERNAL.
	Code pb.Code
	// Message is text for people, at most [MaxErrorMessage] bytes on the
	// wire. Received messages are untrusted: Error quotes them.
	Message string
	// Payment, if not nil, is the server's current price for the refused
	// call. It is set with PAYMENT_REQUIRED and may be with
	// INSUFFICIENT_PAYMENT.
	Payment *PaymentRequired
}

// PaymentRequired is what a server wants to be paid for a refused call.
type PaymentRequired struct {
	// Schedule is the server's current schedule, verified as signed by the
	// server when received. Required.
	Schedule *SignedSchedule
	// Quote is the exact price of the call under Schedule.
	Quote uint64
	// Message is optional text from the server's pricing agent; untrusted
	// when received.
	Message string
}

// Error returns the sentinel's text, then the quoted message and the quote
// if any.
func (e *Error) Error() string {
	s := SentinelFor(e.Code)
	if s == nil {
		s = ErrInternal
	}
	text := s.Error()
	if s == ErrInternal && e.Code != pb.Code_INTERNAL {
		text += " (code " + strconv.Itoa(int(e.Code)) + ")"
	}
	if e.Message != "" {
		text += ": " + strconv.Quote(e.Message)
	}
	if p := e.Payment; p != nil {
		text += " (quote " + strconv.FormatUint(p.Quote, 10)
		if p.Schedule != nil {
			text += " " + p.Schedule.Unit
		}
		if p.Message != "" {
			text += ": " + strconv.Quote(p.Message)
		}
		text += ")"
	}
	return text
}

// Unwrap returns the sentinel of e's code.
func (e *Error) Unwrap() error {
	if s := SentinelFor(e.Code); s != nil {
		return s
	}
	return ErrInternal
}

// EncodeError returns the wire form of err: nil for nil; an *[Error] in err's
// chain as it is; any other error as its [CodeOf] with no message, so that
// nothing internal leaks to the peer. A handler that wants to explain
// returns an *Error with a Message.
func EncodeError(err error) *pb.Error {
	if err == nil {
		return nil
	}
	code := CodeOf(err)
	e, ok := errors.AsType[*Error](err)
	if !ok || code != e.Code {
		return &pb.Error{Code: code}
	}
	m := &pb.Error{Code: e.Code, Message: truncate(e.Message)}
	if p := e.Payment; p != nil && p.Schedule != nil {
		m.PaymentRequired = &pb.PaymentRequired{
			Schedule: p.Schedule.PB(),
			Quote:    p.Quote,
			Message:  truncate(p.Message),
		}
	}
	return m
}

// DecodeError returns the error that m, received from server, stands for:
// nil for nil or OK, otherwise an *[Error]. A payment answer's schedule is
// verified as signed by server; if it is not, DecodeError returns an error
// wrapping [ErrBadSchedule] instead, since such an answer cannot be paid.
// The validity window is not checked.
func DecodeError(m *pb.Error, server peer.ID) error {
	if m == nil || m.Code == pb.Code_OK {
		return nil
	}
	e := &Error{Code: m.Code, Message: truncate(m.Message)}
	if p := m.PaymentRequired; p != nil {
		s, err := VerifySchedule(p.Schedule, server)
		if err != nil {
			return fmt.Errorf("%w (in a %s answer)", err, m.Code)
		}
		e.Payment = &PaymentRequired{Schedule: s, Quote: p.Quote, Message: truncate(p.Message)}
	}
	return e
}

// truncate cuts s to at most MaxErrorMessage bytes, on a rune boundary.
func truncate(s string) string {
	if len(s) <= MaxErrorMessage {
		return s
	}
	n := MaxErrorMessage
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
