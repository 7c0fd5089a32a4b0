package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/scripnet/scrip/node"
	"github.com/scripnet/scrip/node/wallet"
)

func init() {
	register(command{name: "wallet fund", summary: "withdraw coins with a voucher: scrip wallet fund VOUCHER|- [--amount N]", run: runWalletFund})
	register(command{name: "wallet recoup", summary: "get back the value of coins of keysets the mint revoked", run: runWalletRecoup})
	register(command{name: "wallet backup", summary: "print the wallet's seed phrase", run: runWalletBackup})
	register(command{name: "wallet restore", summary: "restore the wallet from its phrase (offline): scrip wallet restore PHRASE|-", run: runWalletRestore})
	register(command{name: "wallet", summary: "show the wallet's balances", run: runWalletShow})
}

// voucherEnv is the environment variable that may hold the voucher code of
// "scrip wallet fund" and "scrip voucher show" when no argument gives it.
const voucherEnv = "SCRIP_VOUCHER"

// maxSecretLine bounds a secret read from standard input.
const maxSecretLine = 4096

// cliSecretArg returns a function that returns the secret named what:
// the positional arguments (joined by spaces); or, when they are "-", the
// first line of standard input, which other local users cannot see as
// they see arguments (ps) and which stays out of the shell's history; or,
// with no argument, the value of the environment variable env if env is
// not empty and it is set. A usage error is returned at once, standard
// input is read when the function is called.
func cliSecretArg(pos []string, what, env string) (func() (string, error), error) {
	if len(pos) == 0 {
		if env != "" {
			if v := strings.TrimSpace(os.Getenv(env)); v != "" {
				return func() (string, error) { return v, nil }, nil
			}
			return nil, fmt.Errorf("%w: give the %s, - to read it from standard input, or set $%s", errUsage, what, env)
		}
		return nil, fmt.Errorf("%w: give the %s, or - to read it from standard input", errUsage, what)
	}
	if len(pos) == 1 && pos[0] == "-" {
		return func() (string, error) { return cliReadSecret(what) }, nil
	}
	v := strings.Join(pos, " ")
	return func() (string, error) { return v, nil }, nil
}

// cliReadSecret reads the first line of standard input.
func cliReadSecret(what string) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(cliStdin, maxSecretLine)).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("reading the %s from standard input: %w", what, err)
	}
	if line = strings.TrimSpace(line); line == "" {
		return "", fmt.Errorf("no %s on standard input", what)
	}
	return line, nil
}

func runWalletFund(ctx context.Context, args []string) error {
	fs, dir := cliFlags("wallet fund")
	amount := fs.Uint64("amount", 0, "units to withdraw (default: everything the voucher holds)")
	cliUsage(fs, "scrip wallet fund VOUCHER|- [--amount N] [--dir DIR]", secretArgNote("voucher code", voucherEnv))
	pos, err := cliParse(fs, args)
	if err != nil {
		return err
	}
	secret, err := cliSecretArg(pos, "voucher code", voucherEnv)
	if err != nil {
		return err
	}
	n, err := cliConnect(*dir)
	if err != nil {
		return err
	}
	voucher, err := secret()
	if err != nil {
		return err
	}
	var res node.FundResult
	if err := n.call(ctx, http.MethodPost, "/fund", node.FundRequest{Voucher: voucher, Amount: *amount}, &res); err != nil {
		return err
	}
	fmt.Fprintf(cliStdout, "withdrew %d %s in %d coins; the wallet holds %d %s\n", res.Withdrawn, res.Unit, res.Coins, res.Balance, res.Unit)
	if res.Short {
		fmt.Fprintf(os.Stderr, "scrip wallet fund: the voucher held only %d %s of the %d asked\n", res.Withdrawn, res.Unit, *amount)
	}
	return nil
}

func runWalletRecoup(ctx context.Context, args []string) error {
	fs, dir := cliFlags("wallet recoup")
	cliUsage(fs, "scrip wallet recoup [--dir DIR]",
		"The client node does this on its own within a minute of the mint revoking a keyset; this runs it now.")
	pos, err := cliParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: scrip wallet recoup takes no arguments", errUsage)
	}
	n, err := cliConnect(*dir)
	if err != nil {
		return err
	}
	var res node.RecoupResult
	if err := n.call(ctx, http.MethodPost, "/wallet/recoup", struct{}{}, &res); err != nil {
		return err
	}
	if res.Coins == 0 && res.Withdrawn == 0 {
		fmt.Fprintf(cliStdout, "no coins of revoked keysets; the wallet holds %d %s\n", res.Balance, res.Unit)
	} else {
		fmt.Fprintf(cliStdout, "recouped %d %s from %d coins of revoked keysets (%d %s refused); withdrew %d %s; the wallet holds %d %s\n",
			res.Recouped, res.Unit, res.Coins, res.Refused, res.Unit, res.Withdrawn, res.Unit, res.Balance, res.Unit)
	}
	if res.Incomplete != "" {
		return fmt.Errorf("recoup not finished (the client node will retry): %s", res.Incomplete)
	}
	return nil
}

func runWalletShow(ctx context.Context, args []string) error {
	fs, dir := cliFlags("wallet")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := cliParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unknown wallet command %q (fund, recoup, backup, restore)", errUsage, pos[0])
	}
	n, err := cliConnect(*dir)
	if err != nil {
		return err
	}
	var wi node.WalletInfo
	if err := n.call(ctx, http.MethodGet, "/wallet?t=json", nil, &wi); err != nil {
		return err
	}
	if *asJSON {
		return cliPrintJSON(wi)
	}
	b := wi.Balance
	fmt.Fprintf(cliStdout, "unspent %d %s, reserved %d, bound %d, pending %d\n", b.Unspent, wi.Unit, b.Reserved, b.Bound, b.Pending)
	for server, v := range wi.Designated {
		fmt.Fprintf(cliStdout, "  %d %s designated to %s\n", v, wi.Unit, server)
	}
	return nil
}

func runWalletBackup(ctx context.Context, args []string) error {
	fs, dir := cliFlags("wallet backup")
	pos, err := cliParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	if n, err := cliConnect(*dir); err == nil {
		var out struct{ Phrase string }
		err := n.call(ctx, http.MethodPost, "/wallet/backup", nil, &out)
		if err == nil {
			fmt.Fprintln(cliStdout, out.Phrase)
			return nil
		}
		if !errors.Is(err, errNoNode) {
			return err
		}
	}
	// No node: read the wallet file directly.
	if _, err := os.Stat(filepath.Join(*dir, node.ClientWalletFile)); err != nil {
		return fmt.Errorf("no wallet in %s (start `scrip client` to make one)", *dir)
	}
	mint, err := cliWalletMint(*dir, "")
	if err != nil {
		return err
	}
	w, err := wallet.Open(filepath.Join(*dir, node.ClientWalletFile), mint)
	if err != nil {
		return cliWalletErr(*dir, err)
	}
	defer w.Close()
	fmt.Fprintln(cliStdout, w.Export())
	return nil
}

func runWalletRestore(ctx context.Context, args []string) error {
	fs, dir := cliFlags("wallet restore")
	announce := fs.String("announce", os.Getenv("SCRIP_ANNOUNCE"), "announcements file naming the mint (default: the mint the directory used before, or $SCRIP_ANNOUNCE)")
	cliUsage(fs, "scrip wallet restore PHRASE|- [--announce FILE] [--dir DIR]", secretArgNote("seed phrase", ""))
	pos, err := cliParse(fs, args)
	if err != nil {
		return err
	}
	secret, err := cliSecretArg(pos, "seed phrase", "")
	if err != nil {
		return err
	}
	phrase, err := secret()
	if err != nil {
		return err
	}
	if n, err := cliConnect(*dir); err == nil {
		if err := n.call(ctx, http.MethodGet, "/status", nil, nil); err == nil {
			return fmt.Errorf("a client node is running for %s: stop it before restoring its wallet", *dir)
		}
	}
	mint, err := cliWalletMint(*dir, *announce)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	w, err := wallet.Restore(filepath.Join(*dir, node.ClientWalletFile), phrase, mint)
	if err != nil {
		return cliWalletErr(*dir, err)
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, node.ClientRestoreFile), []byte("recover coins from the mint at the next start\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(cliStdout, "restored the wallet in %s; its coins are recovered from the mint when `scrip client` starts\n", *dir)
	return nil
}

// cliWalletMint returns the mint a wallet belongs to: the one of the
// announcements file, if given, or the one the client directory
// remembers.
func cliWalletMint(dir, announce string) (wallet.Mint, error) {
	var a node.Announcement
	if announce != "" {
		anns, err := node.ReadAnnouncements(announce)
		if err != nil {
			return wallet.Mint{}, err
		}
		found := 0
		for _, x := range anns {
			if x.Role == node.RoleMint {
				a = x
				found++
			}
		}
		if found != 1 {
			return wallet.Mint{}, fmt.Errorf("the announcements file %s names %d mints; a wallet needs one", announce, found)
		}
	} else {
		b, err := os.ReadFile(filepath.Join(dir, node.ClientMintFile))
		if err != nil {
			return wallet.Mint{}, fmt.Errorf("%s has no wallet yet: give --announce FILE to name the mint", dir)
		}
		if err := json.Unmarshal(b, &a); err != nil {
			return wallet.Mint{}, fmt.Errorf("%s does not parse: %w", filepath.Join(dir, node.ClientMintFile), err)
		}
	}
	ai, err := a.AddrInfo()
	if err != nil {
		return wallet.Mint{}, err
	}
	key, err := node.MintIdentity(a)
	if err != nil {
		return wallet.Mint{}, err
	}
	return wallet.Mint{Key: key, Peer: []byte(ai.ID)}, nil
}

// cliWalletErr explains a wallet that cannot be opened offline.
func cliWalletErr(dir string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("the wallet in %s is in use: stop the client node first", dir)
	case errors.Is(err, wallet.ErrExists):
		return fmt.Errorf("the wallet in %s has another seed: move %s away first", dir, filepath.Join(dir, node.ClientWalletFile))
	case errors.Is(err, wallet.ErrPhrase):
		return errors.New("not a seed phrase, or it has a typo: check it against your backup")
	case errors.Is(err, wallet.ErrMintMismatch):
		return fmt.Errorf("the wallet in %s belongs to another mint", dir)
	}
	return err
}

func cliPrintJSON(v any) error {
	enc := json.NewEncoder(cliStdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
