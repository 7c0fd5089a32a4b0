package spentset

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol"
)

var _ protocol.SpentStore = (*Store)(nil)

// Store is a server's durable spent set. Its methods are safe for
// concurrent use. Create one with [Open]; the zero Store is not usable.
type Store struct {
	db   *bolt.DB
	opts options
	c    *committer
}

// Open opens (creating if needed) the spent set in the bbolt file at path.
//
// Defaults: group commit on, at most [DefaultMaxBatch] ops per
// transaction and [DefaultMaxQueue] waiting; answers up to
// [DefaultMaxAnswerSize] bytes; no bearer cap; no keyset lookup (nothing
// is ever pruned); a one-second wait for the file lock; a full
// [Store.Check] before Open returns.
func Open(path string, opts ...Option) (*Store, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.openTimeout})
	if err != nil {
		return nil, fmt.Errorf("spentset: opening %s: %w", path, err)
	}
	if err := initLayout(db); err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, opts: o}
	if !o.noCheckOnOpen {
		if err := s.check(); err != nil {
			db.Close()
			return nil, err
		}
	}
	s.c = newCommitter(db, o.group, o.maxBatch, o.maxQueue)
	return s, nil
}

func initLayout(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("spentset: creating bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keyVersion); {
		case v == nil:
			return meta.Put(keyVersion, []byte{layoutVersion})
		case !bytes.Equal(v, []byte{layoutVersion}):
			return fmt.Errorf("%w: layout version %x, want %d", ErrCorrupt, v, layoutVersion)
		}
		return nil
	})
}

// Close waits for the transaction in flight, fails queued writes with
// [ErrClosed] and closes the file. Calls after Close fail with ErrClosed.
func (s *Store) Close() error {
	s.c.stop()
	return s.db.Close()
}

// CommitStats reports how many transactions the store committed and how
// many writes they carried; Ops/Commits is the mean batch size.
func (s *Store) CommitStats() CommitStats { return s.c.stats() }

func (r *requestRecord) request(id [16]byte, answer []byte) *protocol.SpentRequest {
	req := &protocol.SpentRequest{ID: id, Digest: r.digest, Value: r.value, Coins: r.coins}
	if answer != nil {
		req.Answered = true
		req.Answer = bytes.Clone(answer)
	}
	return req
}

// Record records that spends, worth value in all, paid for request id with
// the given digest, durably before it returns, and returns the record:
//
//   - If id is recorded with another digest, it returns
//     [ErrRequestConflict] (a bad request).
//   - If id is recorded with this digest, it writes nothing and returns the
//     stored record with Replay set (and its answer, if stored). The spends
//     given are ignored: a request is charged once.
//   - If a coin is already recorded for another request, it returns a
//     *[DoubleSpendError] naming the first such coin and its request, and
//     writes nothing.
//   - If the bearer coins would raise the undeposited bearer value above
//     the cap ([WithBearerCap]), it returns [ErrBearerCap] and writes
//     nothing.
//   - Otherwise it records each coin under its public key, the request,
//     and each spend as a pending deposit, in one transaction.
//
// The caller MUST have verified the spends (signatures, keyset windows,
// designation, amounts, the price) and MUST refuse coins of a keyset past
// its spend window: [Store.Prune] forgets coins once their keyset's deposit
// window has closed, and relies on that to never accept one twice. spends
// holds 1 to protocol.MaxSpends spends of distinct coins.
//
// If ctx ends first, Record returns ctx.Err(); the request may still have
// been recorded, which a later Record of the same request tells.
func (s *Store) Record(ctx context.Context, id [16]byte, digest [32]byte, spends []*coin.Spend, value uint64) (*protocol.SpentRequest, error) {
	in, err := s.prepare(spends)
	if err != nil {
		return nil, err
	}
	var out *protocol.SpentRequest
	err = s.c.do(ctx, func(tx *bolt.Tx) error {
		out = nil
		r, err := record(tx, id, digest, in, value, s.opts.bearerCap)
		out = r
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// prepared is what Record computes outside the transaction.
type prepared struct {
	pubs   [][32]byte
	recs   []coinRecord
	bearer uint64 // total of bearer amounts
	total  uint64
	until  int64 // latest deposit deadline
}

func (s *Store) prepare(spends []*coin.Spend) (*prepared, error) {
	switch {
	case len(spends) == 0:
		return nil, errors.New("spentset: a request to record needs at least one spend")
	case len(spends) > protocol.MaxSpends:
		return nil, fmt.Errorf("%w: %d, at most %d", ErrTooManySpends, len(spends), protocol.MaxSpends)
	}
	p := &prepared{
		pubs:  make([][32]byte, len(spends)),
		recs:  make([]coinRecord, len(spends)),
		until: -1,
	}
	seen := make(map[[32]byte]bool, len(spends))
	for i, sp := range spends {
		if sp == nil {
			return nil, errors.New("spentset: nil spend")
		}
		if seen[sp.Pub] {
			return nil, fmt.Errorf("%w: %x", ErrDuplicateCoin, sp.Pub)
		}
		seen[sp.Pub] = true
		until := int64(never)
		if s.opts.keysets != nil {
			t, ok := s.opts.keysets(sp.KeysetID)
			if !ok {
				return nil, fmt.Errorf("%w: %x", ErrUnknownKeyset, sp.KeysetID)
			}
			until = max(t.Unix(), 0)
			if t.Nanosecond() != 0 && until < never {
				until++ // deadline is exclusive; round up to a whole second
			}
		}
		p.pubs[i] = sp.Pub
		p.recs[i] = coinRecord{state: CoinPending, depositUntil: until, spend: sp.Bytes()}
		p.until = max(p.until, until)
		var ok bool
		if p.total, ok = add(p.total, sp.Amount); !ok {
			return nil, ErrOverflow
		}
		if sp.Designated == ([32]byte{}) {
			p.bearer += sp.Amount // ≤ total
		}
	}
	return p, nil
}

// record is Record's op.
func record(tx *bolt.Tx, id [16]byte, digest [32]byte, p *prepared, value, bearerCap uint64) (*protocol.SpentRequest, error) {
	coins, reqs := tx.Bucket(bucketCoins), tx.Bucket(bucketRequests)
	// Checks.
	if v := reqs.Get(id[:]); v != nil {
		r, err := decodeRequestRecord(v)
		if err != nil {
			return nil, err
		}
		if r.digest != digest {
			return nil, ErrRequestConflict
		}
		req := r.request(id, tx.Bucket(bucketAnswers).Get(id[:]))
		req.Replay = true
		return req, nil
	}
	for _, pub := range p.pubs {
		if v := coins.Get(pub[:]); v != nil {
			c, err := decodeCoinRecord(v)
			if err != nil {
				return nil, err
			}
			return nil, &DoubleSpendError{CoinPub: pub, RequestID: c.requestID}
		}
	}
	old, err := loadStats(tx)
	if err != nil {
		return nil, err
	}
	st := old
	var ok1, ok2, ok3, ok4, ok5 bool
	st.Coins, ok1 = add(st.Coins, uint64(len(p.pubs)))
	st.Requests, ok2 = add(st.Requests, 1)
	st.Pending, ok3 = add(st.Pending, uint64(len(p.pubs)))
	st.PendingValue, ok4 = add(st.PendingValue, p.total)
	st.PendingBearer, ok5 = add(st.PendingBearer, p.bearer)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return nil, ErrOverflow
	}
	if p.bearer > 0 && st.PendingBearer > bearerCap {
		return nil, ErrBearerCap
	}

	// Writes: from here on every error aborts the transaction.
	pending := tx.Bucket(bucketPending)
	for i := range p.recs {
		c := p.recs[i] // a copy: the op may run again
		c.requestID, c.digest = id, digest
		seq, err := pending.NextSequence()
		if err != nil {
			return nil, abort(err)
		}
		c.seq = seq
		if err := pending.Put(seqKey(seq), p.pubs[i][:]); err != nil {
			return nil, abort(err)
		}
		if err := coins.Put(p.pubs[i][:], c.encode()); err != nil {
			return nil, abort(err)
		}
	}
	r := &requestRecord{digest: digest, value: value, depositUntil: p.until, coins: p.pubs}
	if err := reqs.Put(id[:], r.encode()); err != nil {
		return nil, abort(err)
	}
	if p.until != never {
		if err := tx.Bucket(bucketExpiry).Put(expiryKey(p.until, id), nil); err != nil {
			return nil, abort(err)
		}
	}
	if err := st.store(tx, old); err != nil {
		return nil, abort(err)
	}
	return r.request(id, nil), nil
}

// Answer stores body as the answer to request id, durably before it
// returns, so that a retry of the request gets it from [Store.Lookup] or
// [Store.Record]. The first answer stored is kept: a later Answer for the
// same request writes nothing and returns nil. It returns [ErrNotFound] if
// the request is not recorded, [ErrRequestConflict] if it is recorded with
// another digest, and [ErrAnswerTooLarge] if body is longer than
// [WithMaxAnswerSize] allows.
func (s *Store) Answer(ctx context.Context, id [16]byte, digest [32]byte, body []byte) error {
	if len(body) > s.opts.maxAnswer {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrAnswerTooLarge, len(body), s.opts.maxAnswer)
	}
	if body == nil {
		body = []byte{}
	}
	return s.c.do(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRequests).Get(id[:])
		if v == nil {
			return ErrNotFound
		}
		r, err := decodeRequestRecord(v)
		if err != nil {
			return err
		}
		if r.digest != digest {
			return ErrRequestConflict
		}
		answers := tx.Bucket(bucketAnswers)
		if answers.Get(id[:]) != nil {
			return nil
		}
		return abort(answers.Put(id[:], body))
	})
}

// Lookup returns the record of request id, with its answer if one is
// stored, or [ErrNotFound].
func (s *Store) Lookup(ctx context.Context, id [16]byte) (*protocol.SpentRequest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out *protocol.SpentRequest
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRequests).Get(id[:])
		if v == nil {
			return ErrNotFound
		}
		r, err := decodeRequestRecord(v)
		if err != nil {
			return err
		}
		out = r.request(id, tx.Bucket(bucketAnswers).Get(id[:]))
		return nil
	})
	return out, err
}

// CoinInfo is what the store knows of one coin.
type CoinInfo struct {
	Pub   [32]byte
	State CoinState
	// RequestID is the request the coin was recorded for; zero when the
	// state is [CoinUnknown].
	RequestID [16]byte
}

// Coins returns what the store knows of each coin, in order, with the
// mint's verdict on deposited coins.
func (s *Store) Coins(ctx context.Context, pubs [][32]byte) ([]CoinInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]CoinInfo, len(pubs))
	err := s.view(func(tx *bolt.Tx) error {
		coins := tx.Bucket(bucketCoins)
		for i, pub := range pubs {
			out[i].Pub = pub
			v := coins.Get(pub[:])
			if v == nil {
				continue
			}
			c, err := decodeCoinRecord(v)
			if err != nil {
				return err
			}
			out[i].State, out[i].RequestID = c.state, c.requestID
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CoinStatus returns what the store knows of each coin, in order, as the
// CoinStatus call answers it: COIN_UNKNOWN, COIN_RECORDED for a pending
// coin, COIN_DEPOSITED for a coin the mint gave a verdict on (see
// [Store.Coins] for the verdict).
func (s *Store) CoinStatus(ctx context.Context, pubs [][32]byte) ([]protocol.CoinStatus, error) {
	infos, err := s.Coins(ctx, pubs)
	if err != nil {
		return nil, err
	}
	out := make([]protocol.CoinStatus, len(infos))
	for i, in := range infos {
		out[i] = protocol.CoinStatus{Pub: in.Pub, State: in.State.wire(), RequestID: in.RequestID}
	}
	return out, nil
}

// Stats returns the counters.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	var st Stats
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		st, err = loadStats(tx)
		return err
	})
	return st, err
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	return unwrapAbort(s.db.View(fn))
}

// u64 reads a big-endian uint64.
func u64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
