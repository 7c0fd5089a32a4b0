package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestRun runs the example and checks the facts of its transcript: coins
// withdrawn, a paid upload and download, the file back intact, and the
// server credited what the client paid.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	t.Log("\n" + s)
	for _, want := range []string{
		`withdrew \d+ coins worth 100000 msat`,
		`\(k=1, happy=1, N=1\)`,
		`call   allocate shares \[0\]  cost [1-9]\d* msat`,
		`check  the 4200 bytes downloaded are the bytes uploaded`,
		`check  credited = paid = withdrawn − unspent = [1-9]\d* msat`,
	} {
		if !regexp.MustCompile(want).MatchString(s) {
			t.Errorf("the transcript lacks %q", want)
		}
	}
	// The two totals add up to what the server was credited.
	var totals []int
	for _, m := range regexp.MustCompile(`  total  (\d+) msat`).FindAllStringSubmatch(s, -1) {
		n, _ := strconv.Atoi(m[1])
		totals = append(totals, n)
	}
	m := regexp.MustCompile(`server at the mint +(\d+) msat`).FindStringSubmatch(s)
	if len(totals) != 2 || m == nil {
		t.Fatalf("totals %v, credited %v", totals, m)
	}
	if credited, _ := strconv.Atoi(m[1]); credited != totals[0]+totals[1] || credited == 0 {
		t.Errorf("credited %d, paid %d + %d", credited, totals[0], totals[1])
	}
}
