// Command pricing-agent is an external pricing agent for a scrip storage
// server. It speaks the agent protocol of package node/pricing: it reads
// one JSON request a line on standard input and writes one JSON answer a
// line on standard output, until its input ends.
//
// Its law is fixed rates plus a surcharge on space as the disk fills: with
// u the fraction of the offered space in use (at most 1), the storage and
// write rates are the fixed ones times 1 + surcharge·u², and the per-call
// and read rates are the fixed ones. Above 90 % it tells clients that
// space is running short.
//
// It uses the standard library only, as an agent in any language would.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
)

// rates are the four rates of a schedule, named as on the wire.
type rates struct {
	PerCall          uint64 `json:"per_call"`
	StorePerGiBMonth uint64 `json:"store_per_gib_month"`
	ReadPerGiB       uint64 `json:"read_per_gib"`
	WritePerGiB      uint64 `json:"write_per_gib"`
}

// request is the part of a request this agent reads; it ignores the rest.
type request struct {
	Version  int    `json:"version"`
	ID       uint64 `json:"id"`
	Capacity uint64 `json:"capacity"`
	Used     uint64 `json:"used"`
}

// answer is one answer line.
type answer struct {
	ID      uint64 `json:"id"`
	Rates   rates  `json:"rates"`
	Message string `json:"message,omitempty"`
}

// config is the agent's law.
type config struct {
	fixed     rates
	surcharge float64
}

func (c config) answer(req request) answer {
	u := 1.0
	if req.Capacity > 0 {
		u = min(float64(req.Used)/float64(req.Capacity), 1)
	}
	k := 1 + c.surcharge*u*u
	a := answer{ID: req.ID, Rates: rates{
		PerCall:          c.fixed.PerCall,
		StorePerGiBMonth: scale(c.fixed.StorePerGiBMonth, k),
		ReadPerGiB:       c.fixed.ReadPerGiB,
		WritePerGiB:      scale(c.fixed.WritePerGiB, k),
	}}
	if u >= 0.9 {
		a.Message = "space is running short here; prices rise as it fills"
	}
	return a
}

// scale returns v·k rounded, saturating at 2^64 − 1.
func scale(v uint64, k float64) uint64 {
	f := math.Round(float64(v) * k)
	if f >= 1<<64 {
		return math.MaxUint64
	}
	return uint64(f)
}

// run answers each request line of in on out. It stops with an error at
// a line it cannot read, so that the node restarts it.
func run(in io.Reader, out io.Writer, c config) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 16<<10), 1<<20)
	enc := json.NewEncoder(out) // one Write per answer, newline included
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			return fmt.Errorf("reading a request: %w", err)
		}
		if req.Version != 1 {
			return fmt.Errorf("protocol version %d, not 1", req.Version)
		}
		if err := enc.Encode(c.answer(req)); err != nil {
			return err
		}
	}
	return sc.Err()
}

func main() {
	var c config
	flag.Uint64Var(&c.fixed.PerCall, "per-call", 10, "fixed price of each call")
	flag.Uint64Var(&c.fixed.StorePerGiBMonth, "store", 50_000, "fixed price of storing a GiB for a month")
	flag.Uint64Var(&c.fixed.ReadPerGiB, "read", 1_000, "fixed price of reading a GiB")
	flag.Uint64Var(&c.fixed.WritePerGiB, "write", 1_000, "fixed price of writing a GiB")
	flag.Float64Var(&c.surcharge, "surcharge", 3, "space surcharge at a full disk: rates × (1 + surcharge·u²)")
	flag.Parse()
	log.SetPrefix("pricing-agent: ")
	log.SetFlags(0)
	if c.surcharge < 0 || math.IsNaN(c.surcharge) || math.IsInf(c.surcharge, 0) {
		log.Fatal("-surcharge must be a non-negative number")
	}
	if err := run(os.Stdin, os.Stdout, c); err != nil {
		log.Fatal(err)
	}
}
