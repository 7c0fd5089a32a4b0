// Command scrip runs scrip's roles and talks to a running client node.
//
//	scrip mint                          run a mint
//	scrip serve --capacity 10GiB        run a storage server
//	scrip client                        run the client node (wallet, connections, local API)
//	scrip voucher new --amount N        create a voucher (mint admin endpoint)
//	scrip wallet fund VOUCHER|-         withdraw coins with a voucher (- reads it from standard input)
//	scrip wallet backup | restore       export or restore the wallet seed
//	scrip put FILE                      upload a file, print its capability
//	scrip get CAP|- -o FILE             download a file (- reads the capability from standard input)
//	scrip status                        servers, wallet, prices
//	scrip wait-until-connected          wait for servers
//
// Run "scrip help" for the list of commands and "scrip COMMAND -h" for a
// command's flags.
//
// Secrets (voucher codes, capabilities, seed phrases) given as arguments
// are visible to other local users (ps, /proc) while a command runs and
// stay in the shell's history: every command that takes one also reads it
// from standard input when given "-".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand. Files in this package add theirs with register
// from an init function.
type command struct {
	name    string // as typed, e.g. "voucher new"
	summary string // one line for "scrip help"
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("scrip: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// cliStderr is where flag sets print their usage; tests replace it.
var cliStderr io.Writer = os.Stderr

// cliUsage makes fs print the synopsis and the notes, then its flags, on
// -h.
func cliUsage(fs *flag.FlagSet, synopsis string, notes ...string) {
	fs.Usage = func() {
		w := cliStderr
		fmt.Fprintf(w, "usage: %s\n", synopsis)
		for _, n := range notes {
			fmt.Fprintf(w, "\n%s\n", n)
		}
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// secretArgNote is the note of a command that takes a secret, named what,
// as an argument; env, if not empty, is the variable that may hold it.
func secretArgNote(what, env string) string {
	s := "The " + what + " given as an argument is visible to other local users (ps, /proc) while the\n" +
		"command runs, and stays in the shell's history: give - to read it from standard input"
	if env != "" {
		s += ",\nor set $" + env
	}
	return s + "."
}

// errUsage makes main print the usage and exit with status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

// run dispatches args to a command: the longest registered name that is a
// prefix of args wins ("wallet fund" before "wallet").
func run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var c command
	var n int
	for i := min(len(args), 2); i >= 1; i-- {
		name := args[0]
		if i == 2 {
			name += " " + args[1]
		}
		if found, ok := commands[name]; ok {
			c, n = found, i
			break
		}
	}
	if n == 0 {
		fmt.Fprintf(os.Stderr, "scrip: unknown command %q (run \"scrip help\")\n", args[0])
		return 2
	}
	err := c.run(ctx, args[n:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "scrip %s: %v\n", c.name, err)
		return 2
	}
	fmt.Fprintf(os.Stderr, "scrip %s: %v\n", c.name, err)
	return 1
}

func usage() {
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintln(os.Stderr, "usage: scrip COMMAND [flags] [args]")
	fmt.Fprintln(os.Stderr)
	for _, name := range names {
		fmt.Fprintf(os.Stderr, "  %-22s %s\n", name, commands[name].summary)
	}
}
