package main

import (
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/scripnet/scrip/node"
)

// Helpers of the mint, serve and voucher commands.

// roleDefaultDir returns ~/.scrip/ROLE, the default directory of a role.
func roleDefaultDir(role string) string {
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".scrip", role)
	}
	return filepath.Join(home, ".scrip", role)
}

// roleList is a flag that may be repeated and whose values may be
// comma-separated lists.
type roleList []string

func (l *roleList) String() string { return strings.Join(*l, ",") }

func (l *roleList) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// roleParse parses flags and refuses positional arguments.
func roleParse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// oneLine makes err's text one line: libp2p's dial errors list one
// address a line.
func oneLine(err error) error {
	if err == nil {
		return nil
	}
	s := err.Error()
	if !strings.ContainsAny(s, "\r\n") {
		return err
	}
	s = strings.Join(strings.Fields(strings.NewReplacer("\r\n", "; ", "\n", "; ").Replace(s)), " ")
	return errors.New(s)
}

// sizeUnits are the multipliers of the unit suffixes parseByteSize takes,
// in lower case.
var sizeUnits = map[string]uint64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12, "p": 1e15, "pb": 1e15,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "pib": 1 << 50,
}

// parseByteSize parses a size such as 10GiB, 500MB, 1.5TB or 4096: a
// decimal number and an optional unit (B; kB, MB, GB, TB, PB in powers of
// 1000; KiB, MiB, GiB, TiB, PiB in powers of 1024; case does not matter).
// A fraction of a byte is dropped.
func parseByteSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("%q is not a size: want a number and a unit, such as 10GiB or 500MB", s)
	}
	mul, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, t[i:])
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("%q is not a size: bad number %q", s, num)
	}
	r.Mul(r, new(big.Rat).SetUint64(mul))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsUint64() {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n.Uint64(), nil
}

// formatByteSize writes n in the largest binary unit that divides it
// exactly, or in bytes.
func formatByteSize(n uint64) string {
	for _, u := range []struct {
		name string
		v    uint64
	}{{"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.v && n%u.v == 0 {
			return fmt.Sprintf("%d%s", n/u.v, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// readMint returns the one mint of an announcements file, with one line
// for each way the file can be wrong.
func readMint(path string) (node.Announcement, error) {
	if path == "" {
		return node.Announcement{}, fmt.Errorf("%w: --announce FILE is required: the announcements file \"scrip mint --announce FILE\" wrote", errUsage)
	}
	anns, err := node.ReadAnnouncements(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return node.Announcement{}, fmt.Errorf("announcements file %s not found: start \"scrip mint --announce %s\" first", path, path)
	case err != nil:
		return node.Announcement{}, fmt.Errorf("announcements file %s is invalid: %v", path, strings.TrimPrefix(err.Error(), "announcements file "+path+": "))
	}
	var mints []node.Announcement
	for _, a := range anns {
		if a.Role == node.RoleMint {
			mints = append(mints, a)
		}
	}
	switch len(mints) {
	case 0:
		return node.Announcement{}, fmt.Errorf("announcements file %s names no mint: start \"scrip mint --announce %s\" first", path, path)
	case 1:
		return mints[0], nil
	}
	return node.Announcement{}, fmt.Errorf("announcements file %s names %d mints; a server takes the coins of one", path, len(mints))
}

// writeAnnouncement adds a to the announcements file at path, holding a
// lock so that roles starting together do not lose each other's entries.
func writeAnnouncement(path string, a node.Announcement) error {
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return fmt.Errorf("locking the announcements file: %w", err)
	}
	defer unlock()
	if err := node.WriteAnnouncement(path, a); err != nil {
		return fmt.Errorf("writing the announcements file: %w", err)
	}
	return nil
}

// addrList formats a peer's addresses for the ready line.
func addrList(a node.Announcement) string {
	return strings.Join(a.Addrs, " ")
}
