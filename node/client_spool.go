package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// An upload keeps the file's ciphertext (sealed segments, never the
// plaintext) in a spool file of the client directory while it places the
// shares: the share size, which Allocate needs, is known only at the end
// of a file of unknown size, and shares whose server fails are written
// again elsewhere from it. The file is made with mode 0600 in
// <dir>/spool and unlinked at once where the system allows it (its
// space is then freed when the upload ends, or when the process dies);
// elsewhere it is removed when the upload ends, and a spool file left by
// a crash is removed by the next upload of the directory.

// ClientSpoolDir is the subdirectory of the client directory that holds
// the spool files of uploads in progress.
const ClientSpoolDir = "spool"

const spoolPrefix = "put-"

// spools names the spool files this process has open by name (those it
// could not unlink), which a sweep must leave alone.
var spools = struct {
	sync.Mutex
	open map[string]bool
}{open: make(map[string]bool)}

// spoolFile is the spool of one upload.
type spoolFile struct {
	f    *os.File
	name string // the path while it exists, "" once unlinked
}

// newSpool makes a spool file in the client directory, after removing
// the stale ones a crash may have left.
func (c *Client) newSpool() (*spoolFile, error) {
	dir := filepath.Join(c.cfg.Dir, ClientSpoolDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	spools.Lock()
	defer spools.Unlock()
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if strings.HasPrefix(e.Name(), spoolPrefix) && !spools.open[p] {
				if err := os.Remove(p); err == nil {
					c.log.Info("removed a stale upload spool file", "file", p)
				}
			}
		}
	}
	f, err := os.CreateTemp(dir, spoolPrefix+"*.spool") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &spoolFile{f: f}
	if err := os.Remove(f.Name()); err != nil {
		s.name = f.Name()
		spools.open[s.name] = true
	}
	return s, nil
}

// close closes and removes the spool file.
func (s *spoolFile) close() {
	s.f.Close()
	if s.name != "" {
		spools.Lock()
		defer spools.Unlock()
		os.Remove(s.name)
		delete(spools.open, s.name)
	}
}
