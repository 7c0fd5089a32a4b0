package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
)

func init() {
	register(command{name: "get", summary: "download a file: scrip get CAP -o FILE", run: runGet})
}

func runGet(ctx context.Context, args []string) error {
	fs, dir := cliFlags("get")
	out := fs.String("o", "-", "file to write (- for standard output)")
	quiet := fs.Bool("q", false, "no progress bar")
	pos, err := cliParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: give one capability (scrip:chk:...)", errUsage)
	}
	n, err := cliConnect(*dir)
	if err != nil {
		return err
	}
	resp, err := n.request(ctx, http.MethodGet, "/get?cap="+url.QueryEscape(pos[0]), nil, nil)
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
		if _, err := io.Copy(cliStdout, body); err != nil {
			return fmt.Errorf("the download broke off: %w", err)
		}
		return nil
	}
	// Write beside the target and rename, so that a broken download
	// leaves no partial file.
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
