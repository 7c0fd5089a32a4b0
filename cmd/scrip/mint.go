package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/scripnet/scrip/node"
)

func init() {
	register(command{name: "mint", summary: "run a mint", run: runMint})
}

// runMint runs a mint until interrupted. Once it serves it prints one
// line on standard output:
//
//	scrip mint: listening as PEER on ADDR ADDR...; admin URL
func runMint(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("scrip mint", flag.ContinueOnError)
	dir := fs.String("dir", roleDefaultDir("mint"), "the mint's directory: identity key, store, admin file")
	var listen roleList
	fs.Var(&listen, "listen", "libp2p address to listen on; repeat or separate with commas (default: 127.0.0.1, TCP and QUIC, any port)")
	admin := fs.String("admin", node.DefaultAdminAddr, "address of the admin HTTP endpoint (vouchers, keysets, audit, metrics); empty for none")
	remote := fs.Bool("allow-remote-admin", false, "let --admin be an address other than loopback")
	announce := fs.String("announce", os.Getenv("SCRIP_ANNOUNCE"), "announcements file to add the mint to (default $SCRIP_ANNOUNCE)")
	unit := fs.String("unit", node.DefaultUnit, "unit of the coins")
	verbose := fs.Bool("v", false, "log more")
	if err := roleParse(fs, args); err != nil {
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
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	switch {
	case errors.Is(err, node.ErrNotLoopback):
		return fmt.Errorf("--admin %s is not a loopback address: the admin endpoint creates money (add --allow-remote-admin if you mean it)", *admin)
	case err != nil:
		return oneLine(err)
	}
	defer m.Close()
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
	fmt.Printf("scrip mint: listening as %s on %s; admin %s\n", ann.ID, addrList(ann), adminURL)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "scrip mint: stopping")
	return m.Close()
}
