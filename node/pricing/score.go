package pricing

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Event is something a server did wrong, as a client saw it.
type Event int

// Events and their default weights, the points each adds to the server's
// score.
const (
	// EventTimeout is a call that got no answer in time: 1 point.
	EventTimeout Event = iota + 1
	// EventMissingShare is a share the server should hold and does not:
	// 2 points.
	EventMissingShare
	// EventCorruptShare is a share that fails its integrity check:
	// 8 points.
	EventCorruptShare
	// EventCoinsTaken is a paid call whose coins the server recorded
	// without serving it: 8 points.
	EventCoinsTaken
	// EventMintEvidence is the mint's evidence that the server deposited a
	// coin it had refused: 32 points.
	EventMintEvidence
)

var eventNames = map[Event]string{
	EventTimeout:      "timeout",
	EventMissingShare: "missing share",
	EventCorruptShare: "corrupt share",
	EventCoinsTaken:   "coins taken without service",
	EventMintEvidence: "mint evidence",
}

// String returns the event's name.
func (e Event) String() string {
	if n, ok := eventNames[e]; ok {
		return n
	}
	return fmt.Sprintf("event %d", int(e))
}

// Defaults of [NewScores].
const (
	// DefaultThreshold is the score at and above which a server is
	// penalised.
	DefaultThreshold = 4
	// DefaultHalfLife is the time in which a score halves.
	DefaultHalfLife = 24 * time.Hour
)

// defaultWeights are the points of each event; see the Event constants.
var defaultWeights = map[Event]float64{
	EventTimeout:      1,
	EventMissingShare: 2,
	EventCorruptShare: 8,
	EventCoinsTaken:   8,
	EventMintEvidence: 32,
}

// pruneEvery is the number of reports between sweeps of forgotten
// scores; a score below pruneBelow times the threshold is forgotten.
const (
	pruneEvery = 256
	pruneBelow = 1e-3
)

// Scores keeps a client's local, decaying score of each server: the points
// of the events reported against it, halving every half-life. A server
// whose score is at or above the threshold is penalised: uploads skip it
// (downloads still ask it, as they ask every server). With the defaults a
// corrupt share, or coins taken without service, penalises a server for a
// day, the mint's evidence of a refused coin deposited for three, and
// timeouts only when they come faster than about three a day.
//
// The score of a server is local to the client and never sent anywhere.
// A Scores is safe for concurrent use; the zero value is not usable.
type Scores struct {
	o scoreOptions

	mu      sync.Mutex
	m       map[peer.ID]score
	reports int
}

type score struct {
	v  float64
	at time.Time
}

// ScoreOption configures [NewScores].
type ScoreOption func(*scoreOptions) error

type scoreOptions struct {
	now       func() time.Time
	halfLife  time.Duration
	threshold float64
	weights   map[Event]float64
}

// WithScoreClock sets the clock scores decay on. Default: time.Now.
func WithScoreClock(now func() time.Time) ScoreOption {
	return func(o *scoreOptions) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrArgument)
		}
		o.now = now
		return nil
	}
}

// WithHalfLife sets the time in which a score halves. Default:
// [DefaultHalfLife].
func WithHalfLife(d time.Duration) ScoreOption {
	return func(o *scoreOptions) error {
		if d <= 0 {
			return fmt.Errorf("%w: half-life %v", ErrArgument, d)
		}
		o.halfLife = d
		return nil
	}
}

// WithThreshold sets the score at and above which a server is penalised.
// Default: [DefaultThreshold].
func WithThreshold(t float64) ScoreOption {
	return func(o *scoreOptions) error {
		if !(t > 0) || math.IsInf(t, 1) {
			return fmt.Errorf("%w: threshold %v", ErrArgument, t)
		}
		o.threshold = t
		return nil
	}
}

// WithEventWeight sets the points event e adds. Default: as listed with
// the Event constants.
func WithEventWeight(e Event, points float64) ScoreOption {
	return func(o *scoreOptions) error {
		if !(points >= 0) || math.IsInf(points, 1) {
			return fmt.Errorf("%w: weight %v of %v", ErrArgument, points, e)
		}
		o.weights[e] = points
		return nil
	}
}

// NewScores returns an empty score table.
//
// Options and their defaults: [WithScoreClock] (time.Now),
// [WithHalfLife] (24 h), [WithThreshold] (4), [WithEventWeight] (timeout
// 1, missing share 2, corrupt share 8, coins taken 8, mint evidence 32).
func NewScores(opts ...ScoreOption) (*Scores, error) {
	o := scoreOptions{
		now:       time.Now,
		halfLife:  DefaultHalfLife,
		threshold: DefaultThreshold,
		weights:   make(map[Event]float64, len(defaultWeights)),
	}
	for e, w := range defaultWeights {
		o.weights[e] = w
	}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, err
		}
	}
	return &Scores{o: o, m: make(map[peer.ID]score)}, nil
}

// Report adds the points of event e to the score of server id. An event
// without a weight adds nothing.
func (s *Scores) Report(id peer.ID, e Event) {
	w := s.o.weights[e]
	if w == 0 {
		return
	}
	now := s.o.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[id] = score{v: s.decayed(s.m[id], now) + w, at: now}
	if s.reports++; s.reports%pruneEvery == 0 {
		for k, sc := range s.m {
			if s.decayed(sc, now) < pruneBelow*s.o.threshold {
				delete(s.m, k)
			}
		}
	}
}

// Score returns the current score of server id; 0 for a server with no
// events.
func (s *Scores) Score(id peer.ID) float64 {
	now := s.o.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.decayed(s.m[id], now)
}

// Penalised reports whether server id's score is at or above the
// threshold.
func (s *Scores) Penalised(id peer.ID) bool {
	return s.Score(id) >= s.o.threshold
}

// PenalisedUntil returns when server id's score will fall below the
// threshold if nothing more is reported, or the zero time if it is not
// penalised.
func (s *Scores) PenalisedUntil(id peer.ID) time.Time {
	now := s.o.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.m[id]
	if !ok || s.decayed(sc, now) < s.o.threshold {
		return time.Time{}
	}
	d := s.o.halfLife.Seconds() * math.Log2(sc.v/s.o.threshold)
	return sc.at.Add(time.Duration(d * float64(time.Second)))
}

// decayed returns sc's value at now. A time before sc's own counts as
// sc's time.
func (s *Scores) decayed(sc score, now time.Time) float64 {
	if sc.v == 0 {
		return 0
	}
	dt := now.Sub(sc.at)
	if dt <= 0 {
		return sc.v
	}
	return sc.v * math.Exp2(-dt.Seconds()/s.o.halfLife.Seconds())
}
