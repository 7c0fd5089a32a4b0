package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/scripnet/scrip/node"
	"github.com/scripnet/scrip/protocol"
)

func init() {
	register(command{name: "voucher new", summary: "create a voucher and print its code (mint admin endpoint)", run: runVoucherNew})
	register(command{name: "voucher show", summary: "show what is left on a voucher: scrip voucher show CODE|- (mint admin endpoint)", run: runVoucherShow})
}

// voucherFlags adds the flags that find the mint's admin endpoint.
func voucherFlags(name string) (*flag.FlagSet, func() (*node.AdminClient, error)) {
	fs := flag.NewFlagSet("scrip "+name, flag.ContinueOnError)
	dir := fs.String("dir", roleDefaultDir("mint"), "the mint's directory, whose admin file gives the endpoint and its token")
	admin := fs.String("admin", "", "URL of the mint's admin endpoint (default: from the mint's directory, else http://"+node.DefaultAdminAddr+")")
	// The default is not the variable's value: -h would print it.
	token := fs.String("token", "", "token of the admin endpoint (default $SCRIP_ADMIN_TOKEN, else from the mint's directory); "+
		"on the command line it is visible to other local users: prefer the variable or --dir")
	return fs, func() (*node.AdminClient, error) {
		info, err := node.ReadAdminInfo(*dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		url, tok := info.URL, info.Token
		if *admin != "" {
			url = *admin
		}
		if url == "" {
			url = "http://" + node.DefaultAdminAddr
		}
		if !strings.Contains(url, "://") {
			url = "http://" + url
		}
		if env := strings.TrimSpace(os.Getenv("SCRIP_ADMIN_TOKEN")); env != "" {
			tok = env
		}
		if *token != "" {
			tok = *token
		}
		return node.NewAdminClient(url, tok), nil
	}
}

// adminError says in one line why the admin endpoint did not answer.
func adminError(c *node.AdminClient, err error) error {
	switch {
	case errors.Is(err, node.ErrAdminUnreachable):
		return fmt.Errorf("mint admin endpoint %s unreachable: is \"scrip mint\" running, with --admin on that address?", c.URL)
	case errors.Is(err, node.ErrAdminUnauthorized):
		return fmt.Errorf("mint admin endpoint %s refused the token: give --dir with the mint's directory, or --token", c.URL)
	}
	return oneLine(err)
}

// runVoucherNew creates a voucher and prints its code, alone on a line of
// standard output, and nowhere else.
func runVoucherNew(ctx context.Context, args []string) error {
	fs, client := voucherFlags("voucher new")
	amount := fs.Uint64("amount", 0, "value of the voucher, in the mint's unit (required)")
	unit := fs.String("unit", "", "unit of the voucher (default: the mint's)")
	cliUsage(fs, "scrip voucher new --amount N [--unit UNIT] [--dir MINTDIR]",
		"Prints the voucher's code on standard output, and nowhere else: it is a bearer secret worth N.\n"+
			"Pipe it on, as in: scrip voucher new --amount N | scrip wallet fund -")
	if err := roleParse(fs, args); err != nil {
		return err
	}
	if *amount == 0 {
		return fmt.Errorf("%w: --amount N is required and must be positive", errUsage)
	}
	c, err := client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	code, err := c.NewVoucher(ctx, *unit, *amount)
	if err != nil {
		return adminError(c, err)
	}
	fmt.Fprintln(cliStdout, code)
	return nil
}

// runVoucherShow prints a voucher's unit, value and what is left.
func runVoucherShow(ctx context.Context, args []string) error {
	fs, client := voucherFlags("voucher show")
	cliUsage(fs, "scrip voucher show CODE|- [--dir MINTDIR]", secretArgNote("voucher code", voucherEnv))
	pos, err := cliParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fmt.Errorf("%w: give one voucher code", errUsage)
	}
	secret, err := cliSecretArg(pos, "voucher code", voucherEnv)
	if err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	code, err := secret()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	a, err := c.Voucher(ctx, code)
	if errors.Is(err, protocol.ErrNotFound) {
		return errors.New("no such voucher")
	}
	if err != nil {
		return adminError(c, err)
	}
	fmt.Fprintf(cliStdout, "%d of %d %s left\n", a.Remaining, a.Value, a.Unit)
	return nil
}
