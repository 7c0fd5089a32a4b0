package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"
)

func init() {
	register(command{name: "keyset list", summary: "list the mint's keysets (mint admin endpoint)", run: runKeysetList})
	register(command{name: "keyset rotate", summary: "make a new keyset now (mint admin endpoint)", run: runKeysetRotate})
	register(command{name: "keyset revoke", summary: "revoke a keyset whose keys may have leaked: scrip keyset revoke ID (mint admin endpoint)", run: runKeysetRevoke})
	register(command{name: "audit", summary: "compare value deposited with value issued, per denomination (mint admin endpoint)", run: runAudit})
}

func runKeysetList(ctx context.Context, args []string) error {
	fs, client := voucherFlags("keyset list")
	asJSON := fs.Bool("json", false, "print JSON")
	cliUsage(fs, "scrip keyset list [--json] [--dir MINTDIR]")
	if err := roleParse(fs, args); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kss, err := c.Keysets(ctx)
	if err != nil {
		return adminError(c, err)
	}
	if *asJSON {
		return cliPrintJSON(kss)
	}
	at := func(t int64) string { return time.Unix(t, 0).UTC().Format(time.DateTime) }
	for _, k := range kss {
		state := "active"
		switch {
		case k.Revoked:
			state = "revoked"
		case k.Retired:
			state = "retired"
		}
		fmt.Fprintf(cliStdout, "%s  %-8s %-6s issue until %s, spend until %s, deposit until %s (UTC)\n", k.ID, state, k.Unit,
			at(k.IssueUntil), at(k.SpendUntil), at(k.DepositUntil))
	}
	return nil
}

func runKeysetRotate(ctx context.Context, args []string) error {
	fs, client := voucherFlags("keyset rotate")
	cliUsage(fs, "scrip keyset rotate [--dir MINTDIR]",
		"Makes a new keyset now; the keysets issuing before keep issuing until their windows end.")
	if err := roleParse(fs, args); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	k, err := c.RotateKeyset(ctx)
	if err != nil {
		return adminError(c, err)
	}
	fmt.Fprintf(cliStdout, "new keyset %s, issuing until %s UTC\n", k.ID, time.Unix(k.IssueUntil, 0).UTC().Format(time.DateTime))
	return nil
}

func runKeysetRevoke(ctx context.Context, args []string) error {
	fs, client := voucherFlags("keyset revoke")
	cliUsage(fs, "scrip keyset revoke ID [--dir MINTDIR]",
		"Revokes keyset ID (64 hex digits, from scrip keyset list): servers and the mint refuse its coins\n"+
			"from now on, and a new keyset is made if it was the one issuing. Holders of its unspent coins\n"+
			"get their value back by recoup (client nodes do it on their own). It cannot be undone.")
	pos, err := cliParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: give the keyset's ID", errUsage)
	}
	b, err := hex.DecodeString(pos[0])
	if err != nil || len(b) != 32 {
		return fmt.Errorf("%w: a keyset ID is 64 hex digits (see scrip keyset list)", errUsage)
	}
	c, err := client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.RevokeKeyset(ctx, [32]byte(b)); err != nil {
		return adminError(c, err)
	}
	fmt.Fprintf(cliStdout, "keyset %s revoked\n", pos[0])
	return nil
}

func runAudit(ctx context.Context, args []string) error {
	fs, client := voucherFlags("audit")
	asJSON := fs.Bool("json", false, "print JSON")
	cliUsage(fs, "scrip audit [--json] [--dir MINTDIR]",
		"Per denomination: value issued (withdrawn, swapped out) against value spent (deposited, swapped in,\n"+
			"recouped). More spent than issued means a leaked key: revoke its keyset. Exits 1 then.")
	if err := roleParse(fs, args); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rep, err := c.Audit(ctx)
	if err != nil {
		return adminError(c, err)
	}
	if *asJSON {
		if err := cliPrintJSON(rep); err != nil {
			return err
		}
	} else {
		for _, e := range rep.Entries {
			mark := ""
			if e.Overspent {
				mark = "  OVERSPENT"
			}
			fmt.Fprintf(cliStdout, "%s…  %10d %-6s issued %d, spent %d (deposited %d, swapped in %d, recouped %d coins)%s\n",
				e.KeysetID[:16], e.Amount, e.Unit, e.IssuedValue, e.SpentValue, e.Deposited, e.SwapIn, e.Recouped, mark)
		}
	}
	if rep.Overspent {
		return fmt.Errorf("a denomination is overspent: its key may have leaked; revoke its keyset")
	}
	return nil
}
