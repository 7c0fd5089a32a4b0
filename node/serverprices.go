package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/scripnet/scrip/node/pricing"
	"github.com/scripnet/scrip/node/shares"
	"github.com/scripnet/scrip/protocol"
)

// Prices: the server's pricing agent is asked every SchedulePeriod; the
// node signs what it answers into a schedule valid for ScheduleValidity
// and publishes it in a protocol.PriceBook. Every schedule published is
// honoured until it expires, across restarts: the schedules still valid
// are kept in the server's directory.

// ServerSchedulesFile holds, in a server's directory, the signed
// schedules it published that have not expired: a JSON array of the
// encodings (protocol.SignedSchedule.Bytes) in the order published.
const ServerSchedulesFile = "schedules.json"

// scheduleBackdate is how far before its publication a schedule's
// validity starts, so that a client whose clock is a little behind may pay
// under it at once.
const scheduleBackdate = time.Minute

// salesCounter counts the bytes sold (allocated by paid calls) in each
// pricing period, for pricing.State.Sold.
type salesCounter struct {
	mu      sync.Mutex
	current uint64
	history []uint64
	keep    int
}

func (c *salesCounter) add(n uint64) {
	c.mu.Lock()
	c.current = saturatingAdd(c.current, n)
	c.mu.Unlock()
}

// roll ends the current period and returns the sales of the periods kept,
// oldest first, the one just ended last.
func (c *salesCounter) roll() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.history = append(c.history, c.current)
	c.current = 0
	if len(c.history) > c.keep {
		c.history = append(c.history[:0], c.history[len(c.history)-c.keep:]...)
	}
	return append([]uint64(nil), c.history...)
}

// salesBackend is the share store as a protocol.StorageBackend that counts
// the bytes each Allocate reserves.
type salesBackend struct {
	shares.Backend
	sales *salesCounter
}

// Allocate reserves shares and counts their bytes as sold.
func (b salesBackend) Allocate(ctx context.Context, a *protocol.Allocation) (*protocol.Allocated, error) {
	got, err := b.Backend.Allocate(ctx, a)
	if err == nil {
		b.sales.add(a.Size * uint64(len(got.Allocated))) // fits: checked by StorageUsage
	}
	return got, err
}

// loadSchedules publishes in book the schedules of the schedules file
// that are still valid at now.
func (s *Server) loadSchedules(now time.Time) error {
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, ServerSchedulesFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var encs [][]byte
	if err := json.Unmarshal(b, &encs); err != nil {
		s.log.Warn("ignoring a bad schedules file", "err", err)
		return nil
	}
	for _, enc := range encs {
		sc, err := protocol.ParseSignedSchedule(enc, s.host.ID())
		if err != nil {
			s.log.Warn("ignoring a bad stored schedule", "err", err)
			continue
		}
		if now.Unix() <= sc.NotAfter.Unix() {
			s.book.Publish(sc, "")
			s.published = append(s.published, sc)
		}
	}
	return nil
}

// saveSchedules writes the schedules of book that are still valid to the
// schedules file.
func (s *Server) saveSchedules(list []*protocol.SignedSchedule) error {
	encs := make([][]byte, len(list))
	for i, sc := range list {
		encs[i] = sc.Bytes()
	}
	b, err := json.Marshal(encs)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.cfg.Dir, ServerSchedulesFile), append(b, '\n'), 0o600)
}

// PublishPrices asks the pricing agent for rates now, signs them into a
// schedule valid from now for ScheduleValidity and publishes it: it
// becomes the current schedule, and the earlier ones stay honoured until
// they expire. The server does it every SchedulePeriod.
func (s *Server) PublishPrices(ctx context.Context) error {
	s.pricesMu.Lock()
	defer s.pricesMu.Unlock()
	now := s.cfg.Clock()
	var current protocol.Rates
	if cur, _, err := s.book.Current(now); err == nil {
		current = cur.Rates
	}
	u := s.shares.Usage()
	d, err := s.agent.Price(ctx, pricing.State{
		Now:      now,
		Capacity: u.Capacity,
		Used:     saturatingAdd(u.Stored, u.Allocated),
		Period:   s.cfg.SchedulePeriod,
		Sold:     s.sales.roll(),
		Current:  current,
	})
	if err != nil {
		return fmt.Errorf("node: pricing agent: %w", err)
	}
	sc, err := protocol.SignSchedule(s.host.Peerstore().PrivKey(s.host.ID()), protocol.Schedule{
		Server:    s.host.ID(),
		NotBefore: now.Add(-scheduleBackdate),
		NotAfter:  now.Add(s.cfg.ScheduleValidity),
		Unit:      s.unit,
		Rates:     d.Rates,
	})
	if err != nil {
		return fmt.Errorf("node: signing prices: %w", err)
	}
	s.book.Publish(sc, d.Message)
	s.book.Prune(now)
	s.published = append(s.published, sc)
	keep := s.published[:0]
	for _, p := range s.published {
		if now.Unix() <= p.NotAfter.Unix() {
			keep = append(keep, p)
		}
	}
	clear(s.published[len(keep):])
	s.published = keep
	if err := s.saveSchedules(s.published); err != nil {
		// The schedule is published; after a restart it would not be
		// honoured, which costs its clients one more round trip.
		s.log.Warn("saving schedules", "err", err)
	}
	return nil
}

// priceLoop publishes a new schedule every SchedulePeriod until Close.
func (s *Server) priceLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SchedulePeriod)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if err := s.PublishPrices(s.ctx); err != nil && s.ctx.Err() == nil {
				s.log.Error("publishing prices", "err", err)
			}
		}
	}
}
