package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/scripnet/scrip/node/pricing"
	"github.com/scripnet/scrip/protocol"
)

// The client's market memory across sessions, and how it bounds what a
// download pays.
//
// A client that forgot the market at every restart would take the prices
// servers ask when it starts as the market: servers that raised their
// prices just before would be paid them. So the client keeps its market's
// history (pricing.History: the ceiling and when it was last computed, the
// servers' prices and the calls they served, their scores) in
// [ClientMarketFile], saves it on every housekeeping tick and at Close,
// and restores it in NewClient. Across a restart the ceiling still rises
// at most 10 % a day since it was last computed, and a server penalised
// before is still penalised, its score decaying meanwhile. The file is
// treated as untrusted: one that is not a regular file, too large, damaged
// or for another unit is logged and ignored, and the next save replaces
// it.
//
// With history, a download pays each server at most the ceiling's price
// of the call plus the premium (the bound of the first ring positions of
// an upload); it still walks the whole ring, passing over the servers
// that ask more. Without history (a client's first session, for its first
// day), the ceiling is only the prices asked now, and a download may spend
// at most 1/[DefaultDownloadShare] of the wallet instead. A download
// budget replaces both.

// ClientMarketFile, in the client directory, holds the market's history
// (pricing.History, at most pricing.MaxHistorySize bytes).
const ClientMarketFile = "market.history"

// marketHistoryAge is how long a ceiling set in this session must have
// been kept to count as history: a day of growth at most.
const marketHistoryAge = 24 * time.Hour

// clientHistory is the client's state for the market's history.
type clientHistory struct {
	started time.Time  // when this session began
	mu      sync.Mutex // serialises saves
}

// loadMarketHistory restores the market's history from the client
// directory, if there is one. A file that cannot be used is logged and
// ignored: the client starts afresh.
func (c *Client) loadMarketHistory() {
	path := filepath.Join(c.cfg.Dir, ClientMarketFile)
	b, err := readHistoryFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var h *pricing.History
	if err == nil {
		h, err = pricing.ParseHistory(b)
	}
	if err == nil {
		err = c.market.Restore(h)
	}
	if err != nil {
		c.log.Warn("ignoring the market history: starting without it", "file", path, "err", err)
		return
	}
	attrs := []any{"servers", len(h.Servers), "scores", len(h.Scores)}
	if h.Ceiling != nil {
		attrs = append(attrs, "ceiling_at", h.Ceiling.At, "ceiling_since", h.Ceiling.Since)
	}
	c.log.Info("market history restored", attrs...)
}

// readHistoryFile reads a regular file of at most pricing.MaxHistorySize
// bytes.
func readHistoryFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", pricing.ErrBadHistory)
	}
	if fi.Size() > pricing.MaxHistorySize {
		return nil, fmt.Errorf("%w: %d bytes, over %d", pricing.ErrBadHistory, fi.Size(), pricing.MaxHistorySize)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, pricing.MaxHistorySize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > pricing.MaxHistorySize {
		return nil, fmt.Errorf("%w: over %d bytes", pricing.ErrBadHistory, pricing.MaxHistorySize)
	}
	return b, nil
}

// saveMarketHistory writes the market's history to the client directory,
// atomically.
func (c *Client) saveMarketHistory() error {
	c.history.mu.Lock()
	defer c.history.mu.Unlock()
	b, err := c.market.History().MarshalBinary()
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.cfg.Dir, ClientMarketFile), b, 0o600)
}

// hasMarketHistory reports whether the market's ceiling is history: set in
// an earlier session, or at least a day ago in this one. A ceiling set
// just now is only what the servers ask now.
func (c *Client) hasMarketHistory() bool {
	since, ok := c.market.CeilingSince()
	return ok && (since.Before(c.history.started) || c.now().Sub(since) >= marketHistoryAge)
}

// downloadBound is how one download's payments are bounded.
type downloadBound struct {
	// cap is the most the whole download may pay; 0: only the budgets
	// bound it.
	cap uint64
	// ceiling, if not nil, bounds each call: at most its ceiling's price
	// plus the premium.
	ceiling *pricing.Bound
}

// downloadBound returns the bound of a download starting now: none but
// the budgets with a download budget; else the market's ceiling, if it
// is history; else a share of the wallet ([DefaultDownloadShare]).
func (c *Client) downloadBound(ctx context.Context) downloadBound {
	if c.cfg.Budget.Download != 0 {
		return downloadBound{}
	}
	if c.hasMarketHistory() {
		if b, err := c.market.Bound(); err == nil {
			return downloadBound{ceiling: &b}
		}
	}
	return downloadBound{cap: c.downloadCap(ctx)}
}

// callCeiling is the market's ceiling on one call.
type callCeiling struct {
	ceiling uint64 // the ceiling's price of the call
	limit   uint64 // the most to pay: ceiling plus the premium
}

// callBill returns the bill of one call of usage u of the download.
func (d *download) callBill(u protocol.Usage) *callBill {
	b := &callBill{op: d.bill}
	if d.bound.ceiling != nil {
		cc := &callCeiling{}
		cc.ceiling, cc.limit = d.bound.ceiling.Limit(u)
		b.ceiling = cc
	}
	return b
}

// checkLimit refuses to pay amount to server if it is above the most the
// call may cost: its limit (an upload's, from the ceiling) or its
// ceiling (a download's), either of which may be 0. A nil bill has no
// limit.
func (b *callBill) checkLimit(server peer.ID, amount uint64, unit string) error {
	if b == nil {
		return nil
	}
	if b.limited && amount > b.limit {
		return &aboveCeilingError{server: server, asked: amount, limit: b.limit, unit: unit}
	}
	if cc := b.ceiling; cc != nil && amount > cc.limit {
		return &aboveCeilingError{server: server, asked: amount, limit: cc.limit, ceiling: cc.ceiling, hasCeiling: true, unit: unit}
	}
	return nil
}

// aboveCeilingError is a payment refused because the server asks more
// than the market's ceiling allows for the call. It wraps
// protocol.ErrGaveUp (the client gave up on the call: not the server's
// fault, no score) and pricing.ErrAboveCeiling.
type aboveCeilingError struct {
	server       peer.ID
	asked, limit uint64
	ceiling      uint64 // the ceiling's price of the call, if hasCeiling
	hasCeiling   bool
	unit         string
}

func (e *aboveCeilingError) Error() string {
	s := fmt.Sprintf("server %s asks %d %s, above the most this call may cost under the market's ceiling, %d", shortID(e.server), e.asked, e.unit, e.limit)
	if e.hasCeiling && e.ceiling != e.limit {
		s += fmt.Sprintf(" (the ceiling's price %d and the premium)", e.ceiling)
	}
	return s
}

func (e *aboveCeilingError) Unwrap() []error {
	return []error{protocol.ErrGaveUp, pricing.ErrAboveCeiling}
}

// aboveCeiling notes in the report a call to server refused because it
// asked more than the ceiling, and reports whether err is one.
func (d *download) aboveCeiling(server peer.ID, err error) bool {
	e, ok := errors.AsType[*aboveCeilingError](err)
	if !ok {
		return false
	}
	d.note(func(r *GetReport) {
		if d.dear == nil {
			d.dear = e
		}
		if s := server.String(); !slices.Contains(r.AboveCeiling, s) {
			r.AboveCeiling = append(r.AboveCeiling, s)
		}
	})
	return true
}

// priceFailure returns why a download that found found of the k shares it
// needs failed, if servers were passed over for asking more than the
// ceiling; nil otherwise. The error wraps pricing.ErrAboveCeiling and
// pricing.ErrOverBudget: a download budget would pay them.
func (d *download) priceFailure(found int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.rep.AboveCeiling) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "download refused: %d of the %d shares needed found on %d servers; %d servers ask more than the market's ceiling allows",
		found, d.capab.K, d.rep.Asked, len(d.rep.AboveCeiling))
	if d.dear != nil {
		fmt.Fprintf(&b, " (%v)", d.dear)
	}
	b.WriteString("; the ceiling follows the prices seen, rising at most 10 % a day: set a download budget to pay more")
	return &kindError{msg: b.String(), kind: errors.Join(pricing.ErrAboveCeiling, pricing.ErrOverBudget)}
}
