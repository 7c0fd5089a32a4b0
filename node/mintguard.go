package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/scripnet/scrip/node/mintstore"
)

// Backups and restores of a mint's store. mintstore.Open retires every
// keyset of a store that was restored from a copy (a backup made by
// mintstore.Store.Backup, or a database that is not in the epoch of its
// guard file); this file makes the mint act on that: it logs what the
// store did, refuses round one of issuance for retired keysets (the store
// refuses their new rows, which is what makes it sound), and serves
// backups on the admin endpoint. SPEC.md §9 "Backups and restores".

// backupTempPrefix names the temporary copies the admin endpoint makes
// beside the store before sending them, which a start removes: a hidden
// name that no operator gives a backup of their own (one they name
// mint.db.backup-monday in this directory must survive the next start).
const backupTempPrefix = "." + MintStoreFile + ".sending-"

// storeOptions are the options the mint opens its store with.
func (c *MintConfig) storeOptions() []mintstore.Option {
	var opts []mintstore.Option
	if c.GuardFile != "" {
		opts = append(opts, mintstore.WithGuardFile(c.GuardFile))
	}
	return opts
}

// storeOpened logs what the store's restore guard did and removes
// temporary backup copies a crash left behind.
func (m *Mint) storeOpened() {
	if old, _ := filepath.Glob(filepath.Join(m.cfg.Dir, backupTempPrefix+"*")); len(old) > 0 {
		for _, f := range old {
			os.Remove(f)
		}
	}
	g := m.store.Guard()
	if !g.Restored {
		m.log.Debug("restore guard", "epoch", g.Epoch)
		return
	}
	ids := make([]string, len(g.Retired))
	for i, id := range g.Retired {
		ids[i] = keysetIDString(id)
	}
	attrs := []any{"reason", g.Reason, "retired", len(ids), "keysets", strings.Join(ids, ","), "epoch", g.Epoch}
	if !g.BackupTime.IsZero() {
		attrs = append(attrs, "backup_time", g.BackupTime.UTC().Format(time.RFC3339))
	}
	m.log.Warn("mint store restored from a copy: its keysets are retired from issuance (their coins stay good); a fresh keyset issues", attrs...)
}

// Backup headers of GET /backup.
const (
	backupTimeHeader  = "X-Scrip-Backup-Time"  // Unix seconds
	backupEpochHeader = "X-Scrip-Backup-Epoch" // the store's guard epoch
)

// getBackup answers GET /backup with a backup of the store
// (mintstore.Store.Backup): a consistent copy carrying the backup marker,
// made first in a temporary file beside the store and then sent, with
// its length, as application/octet-stream.
func (m *Mint) getBackup(w http.ResponseWriter, r *http.Request) {
	if !bearerOK(r, m.token) {
		refuse(w, http.StatusUnauthorized, "unauthorized", adminHint)
		return
	}
	f, err := os.CreateTemp(m.cfg.Dir, backupTempPrefix+"*")
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, adminError{"backup: " + err.Error()})
		return
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	info, err := m.store.BackupFile(tmp)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, adminError{"backup: " + err.Error()})
		return
	}
	f, err = os.Open(tmp)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, adminError{"backup: " + err.Error()})
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, adminError{"backup: " + err.Error()})
		return
	}
	// The copy may take longer than the endpoint's write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	h.Set(backupTimeHeader, strconv.FormatInt(info.Time.Unix(), 10))
	h.Set(backupEpochHeader, strconv.FormatUint(info.Epoch, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, f); err != nil {
		m.log.Warn("backup not sent in full", "err", err)
		return
	}
	m.log.Info("backup sent", "bytes", fi.Size(), "epoch", info.Epoch, "issuing_keysets", len(info.Issuing))
}

// Backup fetches a backup of the mint's store from its admin endpoint and
// writes it to w; it returns the number of bytes written. A backup cut
// short fails. Put it in place of the store's file (with the mint
// stopped) to restore it: the mint then retires the keysets it holds and
// makes a fresh one.
func (c *AdminClient) Backup(ctx context.Context, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/backup", nil)
	if err != nil {
		return 0, fmt.Errorf("node: mint admin endpoint %q: %w", c.URL, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = NewLocalHTTPClient(0) // no overall timeout: a store can be large; ctx bounds it
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("%w at %s: %w", ErrAdminUnreachable, c.URL, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return 0, ErrAdminUnauthorized
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		var e adminError
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b[:min(len(b), 200)]))
		}
		return 0, fmt.Errorf("node: mint admin: %s: %s", resp.Status, e.Error)
	}
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return n, fmt.Errorf("node: mint admin endpoint %s: backup cut short: %w", c.URL, err)
	}
	return n, nil
}
