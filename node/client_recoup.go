package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/wallet"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// Recoup: when the mint revokes a keyset (its keys may have leaked), its
// coins are refused everywhere. The client proves to the mint that the
// mint issued its unspent coins of that keyset, has their value credited
// to the wallet's recoup code (a voucher code derived from the seed) and
// withdraws fresh coins with it. A recoup in flight is journalled in
// clientRecoupDir, so a crash between sending it and settling it is
// resumed with the same request.

// clientRecoupDir holds the journal of recoups in flight.
const clientRecoupDir = "recoups"

// clientRecoupDraw, in clientRecoupDir, marks that value may wait on the
// recoup code: it is written before a recoup is sent and removed once the
// code is drawn down, so that a draw that failed, or that a crash cut
// off, is done again by the housekeeping or the next start.
const clientRecoupDraw = "draw"

// maxRecoupDraws bounds the withdrawals one Recoup makes with the recoup
// code; what is left then is drawn at the next tick.
const maxRecoupDraws = 4

// RecoupResult reports a [Client.Recoup].
type RecoupResult struct {
	Unit string `json:"unit"`
	// Coins is the number of coins of revoked keysets sent to the mint.
	Coins int `json:"coins"`
	// Recouped is the value the mint credited to the recoup code.
	Recouped uint64 `json:"recouped"`
	// Refused is the value of coins the mint refused: spent before (a
	// server kept them, or an earlier recoup), or not shown to be issued.
	Refused uint64 `json:"refused"`
	// Withdrawn is the value withdrawn as fresh coins from the recoup
	// code (including value recouped by an earlier, interrupted run).
	Withdrawn uint64 `json:"withdrawn"`
	// Balance is the wallet's unspent value afterwards.
	Balance uint64 `json:"balance"`
	// Incomplete, in the HTTP API's answer, says why part of the work is
	// left for the housekeeping to finish (the mint stopped answering, say).
	Incomplete string `json:"incomplete,omitempty"`
}

// Recoup gets back the value of the wallet's unspent coins of keysets the
// mint has revoked: it asks the mint for its keysets, resumes recoups a
// crash interrupted, sends the coins of each revoked keyset with their
// proofs of issuance (in batches of protocol.MaxRecoupCoins), and
// withdraws fresh coins of the current keyset with what the recoup code
// holds. Coins a server may have kept (reserved or spent) are not
// recouped. The housekeeping runs it too when a keyset is revoked.
func (c *Client) Recoup(ctx context.Context) (*RecoupResult, error) {
	if c.isClosed() {
		return nil, ErrClientClosed
	}
	if err := c.loadKeysets(ctx); err != nil {
		return nil, err
	}
	res := &RecoupResult{Unit: c.unit}
	err := c.recoupRevoked(ctx, res)
	if ferr := c.drawRecoupCode(ctx, res); ferr != nil {
		err = errors.Join(err, ferr)
	}
	if b, berr := c.wallet.Balance(ctx); berr == nil {
		res.Balance = b.Unspent
	}
	c.metrics.observeWallet(ctx, c)
	return res, err
}

// revokedKeysets returns the IDs of the keysets the mint reported
// revoked, sorted.
func (c *Client) revokedKeysets() [][32]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [][32]byte
	for id, r := range c.revoked {
		if r {
			out = append(out, id)
		}
	}
	slices.SortFunc(out, func(a, b [32]byte) int { return strings.Compare(string(a[:]), string(b[:])) })
	return out
}

// recoupRevoked resumes the journalled recoups and recoups the coins of
// every revoked keyset.
func (c *Client) recoupRevoked(ctx context.Context, res *RecoupResult) error {
	c.mintMu.Lock()
	defer c.mintMu.Unlock()
	errs := []error{c.resumeRecoups(ctx, res)}
	for _, id := range c.revokedKeysets() {
		coins, err := c.wallet.Recoupable(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for len(coins) > 0 {
			batch := coins[:min(len(coins), protocol.MaxRecoupCoins)]
			coins = coins[len(batch):]
			if err := c.recoupBatch(ctx, batch, res); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	return errors.Join(errs...)
}

// recoupBatch recoups coins of one keyset in one request. c.mintMu must be
// held.
func (c *Client) recoupBatch(ctx context.Context, coins []wallet.RecoupCoin, res *RecoupResult) error {
	nonces := make([][32]byte, len(coins))
	for i, rc := range coins {
		nonces[i] = rc.Nonce
	}
	rows, err := c.mint.Restore(ctx, nonces)
	if err != nil {
		return c.mintErr(err)
	}
	var proofs []coin.RecoupProof
	var pubs [][32]byte
	for _, rc := range coins {
		i := slices.IndexFunc(rows, func(r protocol.RestoredRow) bool {
			return r.Nonce == rc.Nonce && r.KeysetID == rc.Coin.KeysetID && r.Amount == rc.Coin.Amount
		})
		if i < 0 {
			c.log.Warn("the mint holds no issuance row for a coin of a revoked keyset; it cannot be recouped", "amount", rc.Coin.Amount)
			continue
		}
		p, h, err := c.wallet.RecoupProof(&rc.Coin, rc.Nonce, rows[i].Commitments.R0, rows[i].Commitments.R1)
		if err != nil || h != rows[i].ChallengeHash {
			c.log.Warn("a coin of a revoked keyset does not match the mint's issuance row; it cannot be recouped", "amount", rc.Coin.Amount)
			continue
		}
		proofs = append(proofs, p)
		pubs = append(pubs, rc.Coin.Pub)
	}
	if len(pubs) == 0 {
		return nil
	}
	var id [protocol.RequestIDSize]byte
	rand.Read(id[:])
	body, err := protocol.RecoupBody(id, []byte(c.wallet.RecoupCode()), proofs)
	if err != nil {
		return err
	}
	j := &swapJournal{RequestID: id[:], Body: body}
	for _, p := range pubs {
		j.Inputs = append(j.Inputs, hex.EncodeToString(p[:]))
	}
	if err := c.writeRecoupJournal(j); err != nil {
		return fmt.Errorf("client: journalling a recoup: %w", err)
	}
	return c.runRecoup(ctx, j, res)
}

// runRecoup sends the journalled recoup j (again) and settles it. c.mintMu
// must be held.
func (c *Client) runRecoup(ctx context.Context, j *swapJournal, res *RecoupResult) error {
	pubs, err := j.pubs()
	if err != nil {
		return err
	}
	digest := protocol.RequestDigest(protocol.MintID, j.Body)
	spends, err := c.wallet.ReserveRecoup(ctx, j.RequestID, digest, pubs)
	if errors.Is(err, wallet.ErrRequestConflict) {
		// Settled before the journal entry was removed.
		c.deleteRecoupJournal(j)
		return nil
	}
	if errors.Is(err, wallet.ErrUnavailable) {
		// Its coins are not recoupable any more, and no reservation was
		// made for this request: nothing was sent.
		c.deleteRecoupJournal(j)
	}
	if err != nil {
		return fmt.Errorf("client: reserving coins to recoup: %w", err)
	}
	if err := c.markRecoupDraw(); err != nil {
		return fmt.Errorf("client: marking the recoup code to draw: %w", err)
	}
	out, err := c.mint.Recoup(ctx, j.Body, spends)
	if err != nil {
		if e, ok := errors.AsType[*protocol.Error](err); ok && e.Code != pb.Code_INTERNAL {
			// A definite refusal of the whole call: nothing was taken.
			if serr := c.wallet.Settle(ctx, j.RequestID, false); serr != nil {
				return serr
			}
			c.deleteRecoupJournal(j)
		}
		return c.mintErr(err) // otherwise the journal resends it
	}
	var recouped, refused uint64
	notTaken := 0
	for i, r := range out {
		switch r.Status {
		case pb.DepositStatus_DEPOSIT_CREDITED, pb.DepositStatus_DEPOSIT_ALREADY_CREDITED:
			recouped += spends[i].Amount
		case pb.DepositStatus_DEPOSIT_NOT_TAKEN:
			notTaken++
		default:
			refused += spends[i].Amount
			c.log.Warn("the mint refused to recoup a coin", "amount", spends[i].Amount, "status", depositStatusName(r.Status))
		}
	}
	if notTaken > 0 {
		// No verdict: the mint did not look at these coins. The request
		// stays journalled and its coins reserved; sent again, the
		// credited coins are ALREADY_CREDITED and these get a verdict.
		return fmt.Errorf("client: the mint did not look at %d of %d coins of a recoup; it is sent again later", notTaken, len(spends))
	}
	res.Coins += len(spends)
	res.Recouped += recouped
	res.Refused += refused
	if err := c.wallet.Settle(ctx, j.RequestID, true); err != nil {
		return err
	}
	c.deleteRecoupJournal(j)
	return nil
}

// resumeRecoups sends again the recoups of the journal. c.mintMu must be
// held.
func (c *Client) resumeRecoups(ctx context.Context, res *RecoupResult) error {
	js, err := c.readRecoupJournals()
	if err != nil {
		return err
	}
	var errs []error
	for _, j := range js {
		errs = append(errs, c.runRecoup(ctx, j, res))
	}
	return errors.Join(errs...)
}

// drawRecoupCode withdraws fresh coins with what the recoup code holds,
// until the mint says it holds nothing (or does not know it), and then
// removes the mark that value may wait there. A code the mint does not
// know, or that holds nothing, is not an error.
func (c *Client) drawRecoupCode(ctx context.Context, res *RecoupResult) error {
	for range maxRecoupDraws {
		fr, err := c.Fund(ctx, c.wallet.RecoupCode(), 0)
		switch {
		case err == nil:
			res.Withdrawn += fr.Withdrawn
			continue // Fund may stop part way: draw until nothing is left
		case errors.Is(err, ErrVoucherUnknown), errors.Is(err, ErrVoucherSpent):
			c.clearRecoupDraw()
			return nil
		}
		return err
	}
	return nil
}

func (c *Client) recoupDrawPath() string {
	return filepath.Join(c.cfg.Dir, clientRecoupDir, clientRecoupDraw)
}

// markRecoupDraw durably marks that value may wait on the recoup code.
func (c *Client) markRecoupDraw() error {
	if _, err := os.Stat(c.recoupDrawPath()); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(c.cfg.Dir, clientRecoupDir), 0o700); err != nil {
		return err
	}
	return writeFileAtomic(c.recoupDrawPath(), []byte("value may wait on the wallet's recoup code\n"), 0o600)
}

func (c *Client) clearRecoupDraw() {
	if err := os.Remove(c.recoupDrawPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Error("removing the recoup code's mark", "err", err)
	}
}

// hasRecoupable reports whether the wallet holds recoupable coins of a
// keyset the mint reported revoked.
func (c *Client) hasRecoupable(ctx context.Context) bool {
	for _, id := range c.revokedKeysets() {
		if rc, err := c.wallet.Recoupable(ctx, id); err == nil && len(rc) > 0 {
			return true
		}
	}
	return false
}

// recoupIfRevoked runs a recoup when the mint has revoked a keyset of
// which the wallet holds recoupable coins, a recoup is journalled, or
// value may wait on the recoup code.
func (c *Client) recoupIfRevoked(ctx context.Context) error {
	js, jerr := c.readRecoupJournals()
	_, derr := os.Stat(c.recoupDrawPath())
	if jerr == nil && len(js) == 0 && derr != nil && !c.hasRecoupable(ctx) {
		return nil // nothing journalled, nothing to draw, nothing to recoup
	}
	res, err := c.Recoup(ctx)
	if res != nil && res.Coins > 0 {
		c.log.Info("recouped coins of a revoked keyset", "coins", res.Coins, "recouped", res.Recouped,
			"refused", res.Refused, "withdrawn", res.Withdrawn, "unit", res.Unit)
	}
	return err
}

// refusalEvery is the least time between two readings of the mint's
// keysets caused by servers' REVOKED_KEYSET answers: a server may say it
// falsely, and the mint is not to be asked for each call.
const refusalEvery = 10 * time.Second

// recoupAfterRefusal is the answer to a server that refused the client's
// coins as REVOKED_KEYSET: it reads the mint's keysets (at most once per
// refusalEvery; calls refused during a reading wait for it) and, if the
// wallet holds coins of a keyset the mint has revoked, recoups them. It reports whether the call is worth paying
// again: the mint has revoked a keyset, and the wallet's coins of it are
// recouped.
func (c *Client) recoupAfterRefusal(ctx context.Context, server peer.ID) bool {
	// One reading at a time; calls refused meanwhile wait for it.
	c.mu.Lock()
	wait := c.refusing
	if wait == nil && time.Since(c.refusedAt) >= refusalEvery {
		c.refusedAt = time.Now()
		mine := make(chan struct{})
		c.refusing = mine
		c.mu.Unlock()
		err := c.loadKeysets(ctx)
		c.mu.Lock()
		c.refusing = nil
		c.mu.Unlock()
		close(mine)
		if err != nil {
			c.log.Info("reading the mint's keysets after a server refused coins of a revoked keyset", "server", server, "err", err)
			return false
		}
	} else {
		c.mu.Unlock()
		if wait != nil {
			select {
			case <-wait:
			case <-ctx.Done():
				return false
			}
		}
	}
	if len(c.revokedKeysets()) == 0 {
		return false // the mint revoked nothing: the server's word is wrong
	}
	if c.hasRecoupable(ctx) {
		if _, err := c.Recoup(ctx); err != nil {
			c.log.Info("recouping after a server refused coins of a revoked keyset", "server", server, "err", err)
			return false
		}
	}
	// Recouped now, or by a concurrent call: the wallet's coins are of
	// keysets still good.
	return true
}

func (c *Client) writeRecoupJournal(j *swapJournal) error {
	return c.writeJournalIn(clientRecoupDir, j)
}

func (c *Client) deleteRecoupJournal(j *swapJournal) { c.deleteJournalIn(clientRecoupDir, j) }

// readRecoupJournals returns the recoups of the journal. An entry that
// does not parse is logged and left in place, and the others are
// returned: one damaged file does not hold back the other recoups.
func (c *Client) readRecoupJournals() ([]*swapJournal, error) {
	paths, err := c.journalFiles(clientRecoupDir)
	if err != nil {
		return nil, err
	}
	var out []*swapJournal
	for _, path := range paths {
		j, err := readRecoupJournal(path)
		if err != nil {
			c.log.Error("a recoup journal entry does not parse; its coins stay reserved", "file", filepath.Base(path), "err", err)
			continue
		}
		out = append(out, j)
	}
	return out, nil
}

// maxRecoupJournal bounds a recoup journal entry: a Recoup body (at most
// the mint's request cap) in base64, and its coins' keys in hex.
const maxRecoupJournal = 2 * protocol.MaxMintRequestSize

func readRecoupJournal(path string) (*swapJournal, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecoupJournal+1))
	if err != nil {
		return nil, err
	}
	return parseRecoupJournal(b)
}

// errRecoupJournal reports a recoup journal entry that does not parse.
var errRecoupJournal = errors.New("client: recoup journal entry does not parse")

// parseRecoupJournal decodes a recoup journal entry: its request ID, the
// body of a Recoup request with that ID, and the keys of its coins, one
// per proof of the body (1 to protocol.MaxRecoupCoins); no counters.
func parseRecoupJournal(b []byte) (*swapJournal, error) {
	if len(b) > maxRecoupJournal {
		return nil, fmt.Errorf("%w: over %d bytes", errRecoupJournal, maxRecoupJournal)
	}
	j := new(swapJournal)
	if err := json.Unmarshal(b, j); err != nil {
		return nil, fmt.Errorf("%w: %w", errRecoupJournal, err)
	}
	if len(j.RequestID) != protocol.RequestIDSize || len(j.Counters) != 0 ||
		len(j.Inputs) == 0 || len(j.Inputs) > protocol.MaxRecoupCoins || len(j.Body) > protocol.MaxMintRequestSize {
		return nil, errRecoupJournal
	}
	mr := new(pb.MintRequest)
	if err := proto.Unmarshal(j.Body, mr); err != nil || mr.GetRecoup() == nil ||
		!bytes.Equal(mr.RequestId, j.RequestID) || len(mr.GetRecoup().Coins) != len(j.Inputs) {
		return nil, fmt.Errorf("%w: not the body of its recoup", errRecoupJournal)
	}
	if _, err := j.pubs(); err != nil {
		return nil, fmt.Errorf("%w: %w", errRecoupJournal, err)
	}
	return j, nil
}
