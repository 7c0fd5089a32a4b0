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
	"strconv"

	"github.com/schollz/progressbar/v3"

	"github.com/scripnet/scrip/node"
)

func init() {
	register(command{name: "put", summary: "upload a file and print its capability: scrip put FILE", run: runPut})
}

func runPut(ctx context.Context, args []string) error {
	fs, dir := cliFlags("put")
	quiet := fs.Bool("q", false, "no progress bar")
	report := fs.Bool("report", false, "print the upload's report (JSON) on standard error")
	cliUsage(fs, "scrip put FILE|- [-q] [--report] [--dir DIR]",
		"Uploads FILE (- for standard input) and prints its capability, the secret that reads it.",
		"The client node keeps the file's ciphertext (never the plaintext) in a spool file of its\n"+
			"directory while it uploads: it needs free disk space of about the file's size. With a\n"+
			"FILE, whose size is known, it places shares while it reads the file; from standard\n"+
			"input, it reads it all first.")
	pos, err := cliParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: give one FILE (or - for standard input)", errUsage)
	}
	n, err := cliConnect(*dir)
	if err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	size := int64(-1)
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil {
			size = fi.Size()
		}
		in = f
	}
	// With the size known, the client node places shares while it reads
	// the file; otherwise it reads it all (into its spool file) first.
	path := "/put?progress=1"
	if size >= 0 {
		path += "&size=" + strconv.FormatInt(size, 10)
	}
	show := !*quiet && cliStderrIsTerminal()
	var bar *progressbar.ProgressBar
	if show {
		bar = progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("uploading"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionClearOnFinish())
		r := progressbar.NewReader(in, bar)
		in = &r
	}
	resp, err := n.request(ctx, http.MethodPost, path, in, http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var shares *progressbar.ProgressBar
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev node.PutEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("the client node's answer does not parse: %w", err)
		}
		switch {
		case ev.Progress != nil && show:
			if shares == nil {
				bar.Finish()
				shares = progressbar.NewOptions(ev.Progress.SharesTotal,
					progressbar.OptionSetWriter(os.Stderr),
					progressbar.OptionSetDescription("placing shares"),
					progressbar.OptionShowCount(),
					progressbar.OptionSetWidth(30),
					progressbar.OptionClearOnFinish())
			}
			shares.Set(ev.Progress.SharesPlaced)
		case ev.Error != nil:
			if shares != nil {
				shares.Exit()
			}
			return errors.New(ev.Error.Error)
		case ev.Result != nil:
			if shares != nil {
				shares.Finish()
			}
			r := ev.Result.Report
			fmt.Fprintf(os.Stderr, "placed %d shares on %d servers for %d %s\n", len(r.Shares), r.Servers, r.Total, r.Unit)
			if *report {
				enc := json.NewEncoder(os.Stderr)
				enc.SetIndent("", "  ")
				enc.Encode(r)
			}
			fmt.Fprintln(cliStdout, ev.Result.Capability)
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("the client node stopped answering: %w", err)
	}
	return errors.New("the client node ended the upload without a result")
}
