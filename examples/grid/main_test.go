package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRun runs the example and checks the facts of its transcript: twelve
// servers in ring order, the upload on at least happy of them, the
// download verified, and the servers credited what the client paid.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	s := out.String()
	t.Log("\n" + s)

	m := regexp.MustCompile(`k=3 of N=10 shares of \d+ bytes, on (\d+) servers \(happy=7\)`).FindStringSubmatch(s)
	if m == nil {
		t.Fatal("no upload line")
	}
	if n, _ := strconv.Atoi(m[1]); n < 7 {
		t.Errorf("the upload reached %d servers", n)
	}
	if !strings.Contains(s, "1048576 bytes, shares ") || !strings.Contains(s, "verified equal") {
		t.Error("no verified download")
	}

	// The servers' table: one row per server, ring positions 0 to 11 in
	// order; the credits add up to the total credited.
	rows := regexp.MustCompile(`(?m)^ +(\d+) +s(\d\d) +…\S+ .* (\d+) +(\d+) +(\d+) {4,}\S.*$`).FindAllStringSubmatch(s, -1)
	if len(rows) != len(specs) {
		t.Fatalf("%d server rows, want %d", len(rows), len(specs))
	}
	var sum int
	for i, r := range rows {
		if pos, _ := strconv.Atoi(r[1]); pos != i {
			t.Errorf("row %d at ring position %d", i, pos)
		}
		up, _ := strconv.Atoi(r[3])
		down, _ := strconv.Atoi(r[4])
		credited, _ := strconv.Atoi(r[5])
		if up+down != credited {
			t.Errorf("row %d: %d + %d ≠ %d", i, up, down, credited)
		}
		sum += credited
	}
	amount := func(label string) int {
		t.Helper()
		m := regexp.MustCompile(regexp.QuoteMeta(label) + ` +(\d+) +msat`).FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("no %q", label)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	paid := amount("client paid in all")
	if paid == 0 || paid != amount("client paid for the upload")+amount("client paid for the download") {
		t.Errorf("paid %d in all", paid)
	}
	if c := amount("servers credited at the mint"); c != paid || sum != paid {
		t.Errorf("credited %d (rows: %d), paid %d", c, sum, paid)
	}
	if !strings.Contains(s, "check: revenue = paid = "+strconv.Itoa(paid)+" msat") {
		t.Error("no revenue check")
	}
}
