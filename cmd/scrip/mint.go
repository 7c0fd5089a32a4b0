package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/scripnet/scrip/node"
	"github.com/scripnet/scrip/node/mintstore"
)

func init() {
	register(command{name: "mint", summary: "run a mint", run: runMint})
	register(command{name: "mint backup", summary: "write a backup of a mint's store (safe to restore)", run: runMintBackup})
}

// runMint runs a mint until interrupted. Once it serves it prints one
// line on standard output:
//
//	scrip mint: listening as PEER on ADDR ADDR...; admin URL[; metrics URL]
func runMint(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("scrip mint", flag.ContinueOnError)
	dir := fs.String("dir", roleDefaultDir("mint"), "the mint's directory: identity key, store, admin file")
	var listen roleList
	fs.Var(&listen, "listen", "libp2p address to listen on; repeat or separate with commas (default: 127.0.0.1, TCP and QUIC, any port)")
	admin := fs.String("admin", node.DefaultAdminAddr, "address of the admin HTTP endpoint (vouchers, keysets, audit, metrics; all want the token of the admin file); empty for none")
	remote := fs.Bool("allow-remote-admin", false, "let --admin be an address other than loopback")
	announce := fs.String("announce", os.Getenv("SCRIP_ANNOUNCE"), "announcements file to add the mint to (default $SCRIP_ANNOUNCE)")
	unit := fs.String("unit", node.DefaultUnit, "unit of the coins")
	guard := fs.String("guard-file", "", "the store's restore guard file (default: mint.db.guard in --dir); keep it out of what your backups of --dir copy")
	metrics := metricsFlags(fs)
	verbose := fs.Bool("v", false, "log more")
	if err := roleParse(fs, args); err != nil {
		return err
	}
	if err := metrics.check(); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	m, err := node.NewMint(ctx, node.MintConfig{
		Dir:              *dir,
		ListenAddrs:      listen,
		AdminAddr:        *admin,
		AllowRemoteAdmin: *remote,
		Unit:             *unit,
		GuardFile:        *guard,
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	switch {
	case errors.Is(err, node.ErrNotLoopback):
		return fmt.Errorf("--admin %s is not a loopback address: the admin endpoint creates money (add --allow-remote-admin if you mean it)", *admin)
	case err != nil:
		return oneLine(err)
	}
	defer m.Close()
	me, err := metrics.start(*dir, m.Registry())
	if err != nil {
		return oneLine(err)
	}
	if me != nil {
		defer me.Close()
	}
	ann := m.Announcement()
	if *announce != "" {
		if err := writeAnnouncement(*announce, ann); err != nil {
			return err
		}
	}
	adminURL := m.AdminURL()
	if adminURL == "" {
		adminURL = "none"
	}
	metricsURL := ""
	if me != nil {
		metricsURL = "; metrics " + me.URL() + "/metrics"
	}
	fmt.Printf("scrip mint: listening as %s on %s; admin %s%s\n", ann.ID, addrList(ann), adminURL, metricsURL)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "scrip mint: stopping")
	if me != nil {
		me.Close()
	}
	return m.Close()
}

// runMintBackup writes a backup of a mint's store to --out: from the
// running mint through its admin endpoint, or, when no mint answers
// there, from the store file of a stopped mint. It prints one line:
//
//	scrip mint backup: wrote FILE (N bytes, taken at TIME; a restore retires K keysets)
//
// A backup carries a marker: a mint started on it (the file put in place
// of mint.db) retires every keyset it holds and makes a fresh one, so no
// nonce answered after the backup is ever answered again.
func runMintBackup(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("scrip mint backup", flag.ContinueOnError)
	dir := fs.String("dir", roleDefaultDir("mint"), "the mint's directory: its admin file, or its store if the mint is stopped")
	out := fs.String("out", "", "file to write the backup to (required; replaced if it exists)")
	admin := fs.String("admin", "", "URL of the mint's admin endpoint (default: from the mint's admin file)")
	// The default is not the variable's value: -h would print it.
	token := fs.String("token", "", "token of the admin endpoint (default $SCRIP_ADMIN_TOKEN, else from the mint's admin file); "+
		"on the command line it is visible to other local users: prefer the variable or --dir")
	cliUsage(fs, "scrip mint backup --out FILE [--dir MINTDIR] [--admin URL]",
		"Writes a copy of the mint's store that is safe to restore: a mint started on it retires its keysets.")
	if err := roleParse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: --out FILE is required", errUsage)
	}
	if mintstore.SamePath(*out, filepath.Join(*dir, node.MintStoreFile)) {
		return fmt.Errorf("--out %s is the mint's store itself: write the backup elsewhere", *out)
	}
	info, err := node.ReadAdminInfo(*dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	url, tok := info.URL, info.Token
	if *admin != "" {
		url = *admin
		if !strings.Contains(url, "://") {
			url = "http://" + url
		}
	}
	if env := strings.TrimSpace(os.Getenv("SCRIP_ADMIN_TOKEN")); env != "" {
		tok = env
	}
	if *token != "" {
		tok = *token
	}
	var n int64
	var bi mintstore.BackupInfo
	if url != "" {
		c := node.NewAdminClient(url, tok)
		n, err = backupFromAdmin(ctx, c, *out)
		switch {
		case err == nil:
			if bi, err = mintstore.ReadBackupInfo(*out); err != nil {
				os.Remove(*out)
				return fmt.Errorf("the mint's answer is not a backup: %v", err)
			}
		case errors.Is(err, node.ErrAdminUnreachable) && *admin == "":
			// No mint answers: back up the store of a stopped mint.
			url = ""
		case errors.Is(err, node.ErrAdminUnreachable):
			return fmt.Errorf("mint admin endpoint %s unreachable: is \"scrip mint\" running, with --admin on that address?", c.URL)
		case errors.Is(err, node.ErrAdminUnauthorized):
			return fmt.Errorf("mint admin endpoint %s refused the token: give --dir with the mint's directory, or --token", c.URL)
		default:
			return oneLine(err)
		}
	}
	if url == "" {
		bi, err = mintstore.BackupFile(filepath.Join(*dir, node.MintStoreFile), *out)
		switch {
		case errors.Is(err, mintstore.ErrInUse):
			return fmt.Errorf("the mint in %s is running but its admin endpoint does not answer: back it up through the endpoint (--admin URL --token T)", *dir)
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("no mint store in %s", *dir)
		case err != nil:
			return oneLine(err)
		}
		if fi, err := os.Stat(*out); err == nil {
			n = fi.Size()
		}
	}
	fmt.Printf("scrip mint backup: wrote %s (%d bytes, taken at %s; a restore retires %d keysets that issue now)\n",
		*out, n, bi.Time.UTC().Format(time.RFC3339), len(bi.Issuing))
	return nil
}

// backupFromAdmin writes the backup the admin endpoint sends to out,
// through a temporary file beside it, synced and renamed.
func backupFromAdmin(ctx context.Context, c *node.AdminClient, out string) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".tmp*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err := c.Backup(ctx, f)
	if err != nil {
		return n, err
	}
	if err := f.Sync(); err != nil {
		return n, err
	}
	if err := f.Close(); err != nil {
		return n, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return n, err
	}
	ok = true
	return n, nil
}
