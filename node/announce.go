package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Roles named in announcements.
const (
	RoleMint   = "mint"
	RoleServer = "server"
)

// MaxAnnouncementsSize bounds an announcements file.
const MaxAnnouncementsSize = 4 << 20

// Announcement says where a peer of the grid listens. An announcements file
// is a JSON array of them; servers are found through it, and nothing in it
// is trusted beyond addressing: every schedule and keyset is checked
// against the peer's key.
type Announcement struct {
	Role  string   `json:"role"`  // RoleMint or RoleServer
	ID    string   `json:"id"`    // peer ID, base58
	Addrs []string `json:"addrs"` // multiaddrs without /p2p
}

// AddrInfo parses the announcement.
func (a Announcement) AddrInfo() (peer.AddrInfo, error) {
	id, err := peer.Decode(a.ID)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("announcement: peer ID %q: %w", a.ID, err)
	}
	info := peer.AddrInfo{ID: id}
	for _, s := range a.Addrs {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return peer.AddrInfo{}, fmt.Errorf("announcement for %s: address %q: %w", a.ID, s, err)
		}
		info.Addrs = append(info.Addrs, m)
	}
	return info, nil
}

// Announce returns the announcement of a peer in role at info.
func Announce(role string, info peer.AddrInfo) Announcement {
	a := Announcement{Role: role, ID: info.ID.String()}
	for _, m := range info.Addrs {
		a.Addrs = append(a.Addrs, m.String())
	}
	return a
}

// ReadAnnouncements reads an announcements file. A missing file is an
// error wrapping os.ErrNotExist.
func ReadAnnouncements(path string) ([]Announcement, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxAnnouncementsSize {
		return nil, fmt.Errorf("announcements file %s is over %d bytes", path, MaxAnnouncementsSize)
	}
	var out []Announcement
	// The size was checked above, but a FIFO or a growing file gets past
	// Stat: bound the read itself too.
	dec := json.NewDecoder(io.LimitReader(f, MaxAnnouncementsSize))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("announcements file %s: %w", path, err)
	}
	for _, a := range out {
		if a.Role != RoleMint && a.Role != RoleServer {
			return nil, fmt.Errorf("announcements file %s: unknown role %q", path, a.Role)
		}
		if _, err := a.AddrInfo(); err != nil {
			return nil, fmt.Errorf("announcements file %s: %w", path, err)
		}
	}
	return out, nil
}

// WriteAnnouncement adds a (or replaces the entry with a's peer ID) in the
// announcements file at path, creating it if needed. The file is replaced
// atomically; concurrent writers must be serialised by the caller.
func WriteAnnouncement(path string, a Announcement) error {
	list, err := ReadAnnouncements(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	list = slices.DeleteFunc(list, func(b Announcement) bool { return b.ID == a.ID })
	list = append(list, a)
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o600)
}
