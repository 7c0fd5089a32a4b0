package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"

	"github.com/scripnet/scrip/node"
)

func init() {
	register(command{name: "get", summary: "download a file: scrip get CAP|- -o FILE", run: runGet})
}

func runGet(ctx context.Context, args []string) error {
	fs, dir := cliFlags("get")
	out := fs.String("o", "-", "file to write (- for standard output)")
	quiet := fs.Bool("q", false, "no progress bar")
	cliUsage(fs, "scrip get CAP|- [-o FILE] [-q] [--dir DIR]",
		"CAP is the capability \"scrip put\" printed: the file's read key. "+secretArgNote("capability", ""),
		"The file comes as it is downloaded, each segment once it is verified. With -o FILE it goes\n"+
			"to a temporary file beside FILE, renamed to FILE only once the whole file has arrived, all of it\n"+
			"verified: a failed download leaves no FILE (and an existing one untouched). With -o - (the\n"+
			"default) a download that fails part-way has already written the verified part before it to\n"+
			"standard output; scrip then exits with an error, and that output must be discarded.")
	pos, err := cliParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: give one capability (scrip:chk:...), or - to read it from standard input", errUsage)
	}
	n, err := cliConnect(*dir)
	if err != nil {
		return err
	}
	capText := pos[0]
	if capText == "-" {
		if capText, err = cliReadSecret("capability"); err != nil {
			return err
		}
	}
	// The capability goes in the body: URLs end up in logs.
	reqBody, err := json.Marshal(node.GetRequest{Capability: capText})
	if err != nil {
		return err
	}
	resp, err := n.request(ctx, http.MethodPost, "/get", bytes.NewReader(reqBody), http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body io.Reader = resp.Body
	if !*quiet && cliStderrIsTerminal() && *out != "-" {
		bar := progressbar.NewOptions64(resp.ContentLength,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("downloading"),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionClearOnFinish())
		r := progressbar.NewReader(resp.Body, bar)
		body = &r
	}
	if *out == "-" {
		// The node breaks the answer off if the download fails part-way:
		// what came before it is out already, so say so.
		if _, err := io.Copy(cliStdout, body); err != nil {
			return fmt.Errorf("the download broke off (the output is incomplete: discard it): %w", err)
		}
		return nil
	}
	// Write beside the target and rename once all of it has come, so
	// that a broken download (the node breaks the answer off, short of
	// its Content-Length) leaves no partial file.
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".part-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, body); err != nil {
		tmp.Close()
		return fmt.Errorf("the download broke off: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), *out)
}
