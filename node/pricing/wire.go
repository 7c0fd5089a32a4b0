package pricing

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/scripnet/scrip/protocol"
)

// The external agent protocol, version 1: see [External].
const (
	// AgentProtocolVersion is the version a request names.
	AgentProtocolVersion = 1
	// MaxAnswerLine bounds an answer line, newline excluded, in bytes. A
	// longer line is garbage.
	MaxAnswerLine = 4096
	// MaxRequestLine bounds a request line, newline excluded, in bytes;
	// agents may size their buffers by it.
	MaxRequestLine = 16384
	// MaxSoldPeriods bounds the entries of a request's sold list: a
	// longer State.Sold is sent as its last MaxSoldPeriods entries.
	MaxSoldPeriods = 256
)

// AgentRates are rates on the wire of the external agent protocol, named
// as in the protocol's Schedule message. Amounts are JSON integers from 0
// to 2^64 − 1 (agents whose JSON numbers are doubles should stay below
// 2^53).
type AgentRates struct {
	PerCall          uint64 `json:"per_call"`
	StorePerGiBMonth uint64 `json:"store_per_gib_month"`
	ReadPerGiB       uint64 `json:"read_per_gib"`
	WritePerGiB      uint64 `json:"write_per_gib"`
}

// Rates returns r as protocol.Rates.
func (r AgentRates) Rates() protocol.Rates {
	return protocol.Rates{PerCall: r.PerCall, StorePerGiBMonth: r.StorePerGiBMonth, ReadPerGiB: r.ReadPerGiB, WritePerGiB: r.WritePerGiB}
}

// NewAgentRates returns r in its wire form.
func NewAgentRates(r protocol.Rates) AgentRates {
	return AgentRates{PerCall: r.PerCall, StorePerGiBMonth: r.StorePerGiBMonth, ReadPerGiB: r.ReadPerGiB, WritePerGiB: r.WritePerGiB}
}

// AgentRequest is the line the node writes to an external agent: a
// [State], an ID to echo and what the fallback agent would publish.
type AgentRequest struct {
	// Version is [AgentProtocolVersion].
	Version int `json:"version"`
	// ID is the request's number, counting from 1 for each process; the
	// answer echoes it.
	ID uint64 `json:"id"`
	// Now is State.Now in unix seconds.
	Now int64 `json:"now"`
	// Capacity and Used are State.Capacity and State.Used, in bytes.
	Capacity uint64 `json:"capacity"`
	Used     uint64 `json:"used"`
	// PeriodSeconds is State.Period in whole seconds; 0 if shorter (or
	// negative).
	PeriodSeconds int64 `json:"period_seconds"`
	// Sold is State.Sold (its last [MaxSoldPeriods] entries), oldest
	// first; never null.
	Sold []uint64 `json:"sold"`
	// Current is State.Current, the rates published now.
	Current AgentRates `json:"current"`
	// Default is what the fallback agent would publish now; an agent may
	// answer it unchanged, or adjust it.
	Default AgentRates `json:"default"`
}

// AgentAnswer is the line an external agent writes back. Every field of
// Rates must be present; unknown fields are refused.
type AgentAnswer struct {
	// ID echoes the request's.
	ID uint64 `json:"id"`
	// Rates are the rates to publish.
	Rates AgentRates `json:"rates"`
	// Message is optional text for clients: at most [MaxMessageSize] bytes
	// of UTF-8 without control characters.
	Message string `json:"message,omitempty"`
}

// newAgentRequest returns the request line, without its newline, for s.
func newAgentRequest(id uint64, s State, def protocol.Rates) ([]byte, error) {
	sold := s.Sold
	if len(sold) > MaxSoldPeriods {
		sold = sold[len(sold)-MaxSoldPeriods:]
	}
	if sold == nil {
		sold = []uint64{}
	}
	b, err := json.Marshal(AgentRequest{
		Version:       AgentProtocolVersion,
		ID:            id,
		Now:           s.Now.Unix(),
		Capacity:      s.Capacity,
		Used:          s.Used,
		PeriodSeconds: max(int64(s.Period/time.Second), 0),
		Sold:          sold,
		Current:       NewAgentRates(s.Current),
		Default:       NewAgentRates(def),
	})
	if err != nil {
		return nil, err
	}
	if len(b) > MaxRequestLine {
		return nil, fmt.Errorf("pricing: request line of %d bytes", len(b))
	}
	return b, nil
}

// answerFields is AgentAnswer with every field's presence visible.
type answerFields struct {
	ID    *uint64 `json:"id"`
	Rates *struct {
		PerCall          *uint64 `json:"per_call"`
		StorePerGiBMonth *uint64 `json:"store_per_gib_month"`
		ReadPerGiB       *uint64 `json:"read_per_gib"`
		WritePerGiB      *uint64 `json:"write_per_gib"`
	} `json:"rates"`
	Message *string `json:"message"`
}

// parseAnswer checks one answer line (newline included or not) to request
// id and returns the decision it holds, or an error wrapping
// [ErrAgentGarbage].
func parseAnswer(line []byte, id uint64) (Decision, error) {
	bad := func(format string, a ...any) (Decision, error) {
		return Decision{}, fmt.Errorf("%w: "+format, append([]any{ErrAgentGarbage}, a...)...)
	}
	if !utf8.Valid(line) {
		// encoding/json would replace the bad bytes silently.
		return bad("not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var f answerFields
	if err := dec.Decode(&f); err != nil {
		return bad("%v", err)
	}
	if dec.More() {
		return bad("more than one JSON value on the line")
	}
	if f.ID == nil {
		return bad("no id")
	}
	if *f.ID != id {
		return bad("answer to request %d, expected %d", *f.ID, id)
	}
	r := f.Rates
	if r == nil || r.PerCall == nil || r.StorePerGiBMonth == nil || r.ReadPerGiB == nil || r.WritePerGiB == nil {
		return bad("rates missing or incomplete")
	}
	d := Decision{Rates: protocol.Rates{
		PerCall:          *r.PerCall,
		StorePerGiBMonth: *r.StorePerGiBMonth,
		ReadPerGiB:       *r.ReadPerGiB,
		WritePerGiB:      *r.WritePerGiB,
	}}
	if f.Message != nil {
		if err := checkMessage(*f.Message); err != nil {
			return bad("%v", err)
		}
		d.Message = *f.Message
	}
	return d, nil
}

// checkMessage applies the rules of [AgentAnswer.Message].
func checkMessage(m string) error {
	if len(m) > MaxMessageSize {
		return fmt.Errorf("message of %d bytes, over %d", len(m), MaxMessageSize)
	}
	if !utf8.ValidString(m) {
		return fmt.Errorf("message not UTF-8")
	}
	for _, c := range m {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return fmt.Errorf("control character in message")
		}
	}
	return nil
}
