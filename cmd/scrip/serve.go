package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/scripnet/scrip/node"
)

func init() {
	register(command{name: "serve", summary: "run a storage server", run: runServe})
}

// runServe runs a storage server until interrupted. Once it serves it
// prints one line on standard output:
//
//	scrip serve: listening as PEER on ADDR ADDR...; capacity SIZE; metrics URL
func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("scrip serve", flag.ContinueOnError)
	dir := fs.String("dir", roleDefaultDir("server"), "the server's directory: identity key, shares, spent set, schedules")
	capacity := fs.String("capacity", "", "space offered for shares, such as 10GiB or 500MB (required)")
	announce := fs.String("announce", os.Getenv("SCRIP_ANNOUNCE"), "announcements file naming the mint; the server adds itself (default $SCRIP_ANNOUNCE)")
	var listen roleList
	fs.Var(&listen, "listen", "libp2p address to listen on; repeat or separate with commas (default: 127.0.0.1, TCP and QUIC, any port)")
	metrics := metricsFlags(fs)
	agent := fs.String("pricing-agent", "", "external pricing program and its arguments, separated by spaces (default: the built-in agent)")
	unit := fs.String("unit", "", "unit of the prices (default: the unit of the mint's keysets)")
	bearerCap := fs.Uint64("bearer-cap", 0, "undeposited bearer coin value held at most (default 65536)")
	refuse := fs.Bool("refuse-over-cap", false, "over the bearer cap, refuse bearer coins rather than deposit them before serving")
	period := fs.Duration("schedule-period", 0, "time between two price schedules (default 10m)")
	deposit := fs.Duration("deposit-interval", 0, "time between two deposit rounds (default 30s)")
	verbose := fs.Bool("v", false, "log more")
	if err := roleParse(fs, args); err != nil {
		return err
	}
	if err := metrics.check(); err != nil {
		return err
	}
	if *capacity == "" {
		return fmt.Errorf("%w: --capacity SIZE is required, such as --capacity 10GiB", errUsage)
	}
	size, err := parseByteSize(*capacity)
	if err != nil {
		return fmt.Errorf("bad --capacity: %v", err)
	}
	if size == 0 {
		return errors.New("bad --capacity: a server must offer some space")
	}
	mint, err := readMint(*announce)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg := node.ServerConfig{
		Dir:               *dir,
		Capacity:          size,
		Mint:              mint,
		AnnouncementsFile: *announce,
		ListenAddrs:       listen,
		Unit:              *unit,
		BearerCap:         *bearerCap,
		RefuseOverCap:     *refuse,
		SchedulePeriod:    *period,
		DepositInterval:   *deposit,
		AgentStderr:       os.Stderr,
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	if *agent != "" {
		cfg.AgentProgram = strings.Fields(*agent)
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := node.NewServer(startCtx, cfg)
	switch {
	case errors.Is(err, node.ErrUnreachable):
		detail := strings.TrimPrefix(oneLine(err).Error(), node.ErrUnreachable.Error()+": ")
		return fmt.Errorf("mint unreachable: %s (is \"scrip mint\" running? is %s current?)", detail, *announce)
	case err != nil:
		return oneLine(err)
	}
	defer s.Close()
	me, err := metrics.start(*dir, s.Registry())
	if err != nil {
		return oneLine(err)
	}
	if me != nil {
		defer me.Close()
	}
	ann := s.Announcement()
	if err := writeAnnouncement(*announce, ann); err != nil {
		return err
	}
	metricsURL := "none"
	if me != nil {
		metricsURL = me.URL() + "/metrics"
	}
	fmt.Printf("scrip serve: listening as %s on %s; capacity %s; metrics %s\n", ann.ID, addrList(ann), formatByteSize(size), metricsURL)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "scrip serve: stopping")
	if me != nil {
		me.Close()
	}
	return s.Close()
}
