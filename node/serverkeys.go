package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

// serverKeysets is what a server knows of the mint's keysets: the
// protocol.KeysetList its paywall verifies coins with (revoked keysets
// refused), and the deposit deadline of every keyset it has seen, revoked
// or not, which the spent set needs to prune.
type serverKeysets struct {
	list *protocol.KeysetList

	mu        sync.RWMutex
	deadlines map[[32]byte]time.Time
	revoked   map[[32]byte]bool
	sets      map[[32]byte]*coin.Keyset
}

func newServerKeysets() *serverKeysets {
	l, _ := protocol.NewKeysetList()
	return &serverKeysets{
		list:      l,
		deadlines: make(map[[32]byte]time.Time),
		revoked:   make(map[[32]byte]bool),
		sets:      make(map[[32]byte]*coin.Keyset),
	}
}

// update applies the mint's answer to Keysets: new keysets are added,
// revoked ones refused from now on. It returns the numbers of keysets
// added and newly revoked. A keyset the mint stops publishing stays known
// until its windows close; a revocation is never undone.
func (k *serverKeysets) update(published []protocol.PublishedKeyset) (added, revoked int, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range published {
		id := p.Keyset.ID()
		if _, ok := k.sets[id]; !ok {
			if err := k.list.Add(p.Keyset); err != nil {
				return added, revoked, fmt.Errorf("node: mint keyset %x: %w", id[:8], err)
			}
			k.sets[id] = p.Keyset
			k.deadlines[id] = time.Unix(p.Keyset.DepositUntil, 0)
			added++
		}
		if p.Revoked && !k.revoked[id] {
			k.list.Revoke(id)
			k.revoked[id] = true
			revoked++
		}
	}
	return added, revoked, nil
}

// depositUntil is the spent set's KeysetLookup.
func (k *serverKeysets) depositUntil(id [32]byte) (time.Time, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	t, ok := k.deadlines[id]
	return t, ok
}

// units returns the units of the keysets not revoked and inside their
// spend window at now, sorted.
func (k *serverKeysets) units(now time.Time) []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var out []string
	for id, ks := range k.sets {
		if !k.revoked[id] && ks.Open(coin.WindowSpend, now) && !slices.Contains(out, ks.Unit) {
			out = append(out, ks.Unit)
		}
	}
	slices.Sort(out)
	return out
}

// counts returns the numbers of keysets known and revoked.
func (k *serverKeysets) counts() (known, revoked int) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.sets), len(k.revoked)
}

// RefreshKeysets fetches the mint's keysets now and applies them: new
// keysets are accepted, revoked ones refused from now on. The server does
// it every KeysetRefresh.
func (s *Server) RefreshKeysets(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, protocol.DefaultCallTimeout)
		defer cancel()
	}
	s.refreshMintAddrs()
	published, err := s.mint.Keysets(ctx)
	if err != nil {
		return fmt.Errorf("node: fetching the mint's keysets: %w", err)
	}
	added, revoked, err := s.keysets.update(published)
	if added > 0 || revoked > 0 {
		s.log.Info("mint keysets updated", "added", added, "revoked", revoked)
	}
	return err
}

// keysetLoop refreshes the mint's keysets every KeysetRefresh until Close,
// and sooner after a failure.
func (s *Server) keysetLoop() {
	defer s.wg.Done()
	every := s.cfg.KeysetRefresh
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if err := s.RefreshKeysets(s.ctx); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.Warn("refreshing the mint's keysets", "err", err)
			t.Reset(min(every, time.Minute))
			continue
		}
		t.Reset(every)
	}
}

// keysetMissEvery is the least time between two fetches of the mint's
// keysets caused by coins of unknown keysets: anyone can send such coins,
// and the mint is not to be asked for each.
const keysetMissEvery = 5 * time.Second

// keysetMissWait bounds how long a paid call waits for that fetch.
const keysetMissWait = 3 * time.Second

// keysetMiss is the paywall's protocol.WithKeysetMiss: a coin of a keyset
// the server does not know may be of one the mint has just published
// (after a rotation or a revocation). It fetches the mint's keysets again,
// at most once per keysetMissEvery, and reports whether the keyset is
// known now. Concurrent calls share one fetch.
func (s *Server) keysetMiss(ctx context.Context, id [32]byte) bool {
	s.missMu.Lock()
	done := s.missFlight
	if done == nil {
		if time.Since(s.missLast) < keysetMissEvery {
			s.missMu.Unlock()
			return false
		}
		// This call fetches; the others wait for it.
		s.missLast = time.Now()
		mine := make(chan struct{})
		s.missFlight = mine
		s.missMu.Unlock()
		fctx, cancel := context.WithTimeout(ctx, keysetMissWait)
		if err := s.RefreshKeysets(fctx); err != nil {
			s.log.Info("fetching the mint's keysets for a coin of an unknown keyset", "err", err)
		}
		cancel()
		s.missMu.Lock()
		s.missFlight = nil
		s.missMu.Unlock()
		close(mine)
	} else {
		s.missMu.Unlock()
		t := time.NewTimer(keysetMissWait)
		defer t.Stop()
		select {
		case <-done:
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		}
	}
	_, known := s.keysets.depositUntil(id) // every keyset seen has a deadline
	return known
}
