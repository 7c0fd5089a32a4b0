package pricing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scripnet/scrip/protocol"
)

// fixedAgent answers the same every time.
type fixedAgent struct{ r protocol.Rates }

func (f fixedAgent) Price(ctx context.Context, s State) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	return Decision{Rates: f.r, Message: "fallback"}, nil
}

var fallbackRates = protocol.Rates{PerCall: 100, StorePerGiBMonth: 200, ReadPerGiB: 300, WritePerGiB: 400}

// fromAgent is what the fake agent's good answer is.
var fromAgent = Decision{Rates: protocol.Rates{PerCall: 101, StorePerGiBMonth: 200, ReadPerGiB: 300, WritePerGiB: 400}, Message: "from the agent"}

var fromFallback = Decision{Rates: fallbackRates, Message: "fallback"}

// failures collects what an External reports.
type failures struct {
	mu   sync.Mutex
	errs []error
}

func (f *failures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

func (f *failures) list() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...)
}

// newFake returns an External running this test binary as a fake agent
// in the given mode.
func newFake(t *testing.T, mode string, opts ...ExternalOption) (*External, *failures) {
	t.Helper()
	t.Setenv(agentEnv, mode)
	// Under -race, a binary that exits with status 0 first sleeps a
	// second; a fake agent should not.
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	f := new(failures)
	e, err := NewExternal([]string{os.Args[0], "-test.run=^$"}, append([]ExternalOption{
		WithFallback(fixedAgent{fallbackRates}),
		WithFailureFunc(f.add),
	}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e, f
}

func TestExternalGoodAgent(t *testing.T) {
	e, f := newFake(t, "good")
	for i := range 5 {
		d, err := e.Price(context.Background(), State{Now: epoch.Add(time.Duration(i) * time.Hour)})
		require.NoError(t, err)
		require.Equal(t, fromAgent, d)
	}
	require.Empty(t, f.list())
	require.NoError(t, e.Close())
	require.NoError(t, e.Close(), "twice")
	d, err := e.Price(context.Background(), State{Now: epoch})
	require.NoError(t, err)
	require.Equal(t, fromFallback, d, "after Close")
}

func TestExternalMisbehaving(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want error
		text string
	}{
		{"garbage", ErrAgentGarbage, "invalid character"},
		{"hang", ErrAgentTimeout, "no answer within 300ms"},
		{"crash", ErrAgentExited, "exit status 3"},
		{"exit0", ErrAgentExited, "exit status 0"},
		{"partial", ErrAgentExited, "within a line"},
		{"long", ErrAgentGarbage, "line over 4096 bytes"},
		{"wrong-id", ErrAgentGarbage, "answer to request 2, expected 1"},
		{"missing-rate", ErrAgentGarbage, "incomplete"},
		{"unknown-field", ErrAgentGarbage, "unknown field"},
		{"long-message", ErrAgentGarbage, "message of 257 bytes"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			timeout := 10 * time.Second // slow machines start processes slowly
			if tc.mode == "hang" {
				timeout = 300 * time.Millisecond
			}
			e, f := newFake(t, tc.mode, WithAnswerTimeout(timeout))
			d, err := e.Price(context.Background(), State{Now: epoch})
			require.NoError(t, err)
			require.Equal(t, fromFallback, d)
			errs := f.list()
			require.Len(t, errs, 1)
			require.ErrorIs(t, errs[0], tc.want)
			require.Contains(t, errs[0].Error(), tc.text)
		})
	}
}

func TestExternalExtraLineIsGarbage(t *testing.T) {
	// An answer too many is read as the answer to the next request, whose
	// ID it does not echo.
	e, f := newFake(t, "two-answers")
	d, err := e.Price(context.Background(), State{Now: epoch})
	require.NoError(t, err)
	require.Equal(t, fromAgent, d)
	d, err = e.Price(context.Background(), State{Now: epoch})
	require.NoError(t, err)
	require.Equal(t, fromFallback, d)
	require.Len(t, f.list(), 1)
	require.ErrorIs(t, f.list()[0], ErrAgentGarbage)
}

func TestExternalCannotStart(t *testing.T) {
	f := new(failures)
	e, err := NewExternal([]string{filepath.Join(t.TempDir(), "no-such-agent")}, WithFallback(fixedAgent{fallbackRates}), WithFailureFunc(f.add))
	require.NoError(t, err)
	defer e.Close()
	d, err := e.Price(context.Background(), State{Now: epoch})
	require.NoError(t, err)
	require.Equal(t, fromFallback, d)
	require.Len(t, f.list(), 1)
	require.ErrorIs(t, f.list()[0], ErrAgentStart)
}

func TestExternalRestartBackoff(t *testing.T) {
	dir := t.TempDir()
	ctl := filepath.Join(dir, "mode")
	setMode := func(m string) { require.NoError(t, os.WriteFile(ctl, []byte(m), 0o600)) }
	starts := func() []string {
		b, _ := os.ReadFile(ctl + ".starts")
		return strings.Fields(string(b))
	}
	setMode("garbage")
	e, f := newFake(t, "file:"+ctl, WithRestartBackoff(time.Second, 4*time.Second))
	at := func(d time.Duration) Decision {
		t.Helper()
		dec, err := e.Price(context.Background(), State{Now: epoch.Add(d)})
		require.NoError(t, err)
		return dec
	}

	// Failures in a row wait 1 s, 2 s, 4 s, 4 s before the next start.
	require.Equal(t, fromFallback, at(0))
	require.Len(t, starts(), 1)
	require.Equal(t, fromFallback, at(999*time.Millisecond))
	require.Len(t, starts(), 1, "no start during the backoff")
	require.Equal(t, fromFallback, at(time.Second))
	require.Len(t, starts(), 2)
	require.Equal(t, fromFallback, at(2999*time.Millisecond))
	require.Len(t, starts(), 2)
	require.Equal(t, fromFallback, at(3*time.Second))
	require.Len(t, starts(), 3)
	require.Equal(t, fromFallback, at(7*time.Second))
	require.Len(t, starts(), 4)
	require.Equal(t, fromFallback, at(10999*time.Millisecond))
	require.Len(t, starts(), 4, "the backoff stops growing at its maximum")
	require.Len(t, f.list(), 4)

	// Mended, it is started again after the backoff and answers.
	setMode("good")
	require.Equal(t, fromAgent, at(11*time.Second))
	require.Equal(t, fromAgent, at(12*time.Second), "same process")
	require.Equal(t, []string{"garbage", "garbage", "garbage", "garbage", "good"}, starts())
}

func TestExternalBackoffResetsAfterGoodAnswer(t *testing.T) {
	dir := t.TempDir()
	ctl := filepath.Join(dir, "mode")
	require.NoError(t, os.WriteFile(ctl, []byte("crash"), 0o600))
	e, f := newFake(t, "file:"+ctl, WithRestartBackoff(time.Second, time.Minute))
	price := func(d time.Duration) Decision {
		dec, err := e.Price(context.Background(), State{Now: epoch.Add(d)})
		require.NoError(t, err)
		return dec
	}
	price(0)           // fails: next start at 1 s
	price(time.Second) // fails: next start at 3 s
	require.NoError(t, os.WriteFile(ctl, []byte("good"), 0o600))
	require.Equal(t, fromAgent, price(3*time.Second))
	require.NoError(t, os.WriteFile(ctl, []byte("crash"), 0o600))
	e.mu.Lock()
	e.stop(0) // the next call starts a crashing process
	e.mu.Unlock()
	price(4 * time.Second) // fails: backoff reset, next start at 5 s
	require.Len(t, f.list(), 3)
	price(5 * time.Second)
	require.Len(t, f.list(), 4, "restarted after 1 s, not 4 s")
}

func TestExternalCanceled(t *testing.T) {
	dir := t.TempDir()
	ctl := filepath.Join(dir, "mode")
	require.NoError(t, os.WriteFile(ctl, []byte("hang"), 0o600))
	e, f := newFake(t, "file:"+ctl)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := e.Price(ctx, State{Now: epoch})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Empty(t, f.list(), "not the agent's failure")

	// No backoff: the next call starts the agent at once.
	require.NoError(t, os.WriteFile(ctl, []byte("good"), 0o600))
	d, err := e.Price(context.Background(), State{Now: epoch})
	require.NoError(t, err)
	require.Equal(t, fromAgent, d)
}

func TestExternalRequests(t *testing.T) {
	dir := t.TempDir()
	ctl := filepath.Join(dir, "mode")
	require.NoError(t, os.WriteFile(ctl, []byte("good"), 0o600))
	e, _ := newFake(t, "file:"+ctl)
	sold := make([]uint64, 300)
	for i := range sold {
		sold[i] = uint64(i)
	}
	cur := protocol.Rates{PerCall: 1, StorePerGiBMonth: 2, ReadPerGiB: 3, WritePerGiB: 4}
	s := State{Now: epoch, Capacity: tib, Used: gib, Period: time.Hour, Sold: sold, Current: cur}
	_, err := e.Price(context.Background(), s)
	require.NoError(t, err)
	s.Sold = nil
	_, err = e.Price(context.Background(), s)
	require.NoError(t, err)

	b, err := os.ReadFile(ctl + ".requests")
	require.NoError(t, err)
	lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	require.Len(t, lines, 2)
	var reqs [2]AgentRequest
	for i, l := range lines {
		dec := json.NewDecoder(bytes.NewReader(l))
		dec.DisallowUnknownFields()
		require.NoError(t, dec.Decode(&reqs[i]))
		require.LessOrEqual(t, len(l), MaxRequestLine)
	}
	require.Equal(t, AgentRequest{
		Version: 1, ID: 1, Now: epoch.Unix(), Capacity: tib, Used: gib, PeriodSeconds: 3600,
		Sold: sold[300-MaxSoldPeriods:], Current: NewAgentRates(cur), Default: NewAgentRates(fallbackRates),
	}, reqs[0])
	require.Equal(t, uint64(2), reqs[1].ID)
	require.Equal(t, []uint64{}, reqs[1].Sold)
	require.Contains(t, string(lines[1]), `"sold":[]`, "never null")
}

func TestExternalConcurrent(t *testing.T) {
	e, f := newFake(t, "good")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				d, err := e.Price(context.Background(), State{Now: epoch})
				require.NoError(t, err)
				require.Equal(t, fromAgent, d)
			}
		})
	}
	wg.Wait()
	require.Empty(t, f.list())
}

func TestExternalDefaultFallback(t *testing.T) {
	e, err := NewExternal([]string{filepath.Join(t.TempDir(), "none")})
	require.NoError(t, err)
	defer e.Close()
	d, err := e.Price(context.Background(), State{Now: epoch, Capacity: tib})
	require.NoError(t, err)
	require.InDelta(t, DefaultBase.StorePerGiBMonth, d.Rates.StorePerGiBMonth, float64(DefaultBase.StorePerGiBMonth)*DefaultJitter+1)
}

func TestNewExternalArguments(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		opts []ExternalOption
	}{
		{nil, nil},
		{[]string{""}, nil},
		{[]string{"x"}, []ExternalOption{WithFallback(nil)}},
		{[]string{"x"}, []ExternalOption{WithAnswerTimeout(0)}},
		{[]string{"x"}, []ExternalOption{WithRestartBackoff(0, time.Second)}},
		{[]string{"x"}, []ExternalOption{WithRestartBackoff(2*time.Second, time.Second)}},
	} {
		_, err := NewExternal(tc.argv, tc.opts...)
		require.ErrorIs(t, err, ErrArgument)
	}
}

func TestParseAnswer(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
		d    Decision
	}{
		{`{"id":7,"rates":{"per_call":1,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4}}`, true,
			Decision{Rates: protocol.Rates{PerCall: 1, StorePerGiBMonth: 2, ReadPerGiB: 3, WritePerGiB: 4}}},
		{` {"rates":{"write_per_gib":18446744073709551615,"read_per_gib":0,"store_per_gib_month":0,"per_call":0},"id":7,"message":"héllo, 世界"}` + "\r\n", true,
			Decision{Rates: protocol.Rates{WritePerGiB: 1<<64 - 1}, Message: "héllo, 世界"}},
		{`{"id":7,"rates":{"per_call":1,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4},"message":""}`, true,
			Decision{Rates: protocol.Rates{PerCall: 1, StorePerGiBMonth: 2, ReadPerGiB: 3, WritePerGiB: 4}}},
		{``, false, Decision{}},
		{`null`, false, Decision{}},
		{`[]`, false, Decision{}},
		{`{"id":7}`, false, Decision{}},
		{`{"rates":{"per_call":1,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4}}`, false, Decision{}},
		{`{"id":8,"rates":{"per_call":1,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4}}`, false, Decision{}},
		{`{"id":7,"rates":{"per_call":null,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4}}`, false, Decision{}},
		{`{"id":7,"rates":{"per_call":-1,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4}}`, false, Decision{}},
		{`{"id":7,"rates":{"per_call":1.5,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4}}`, false, Decision{}},
		{`{"id":7,"rates":{"per_call":"1","store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4}}`, false, Decision{}},
		{`{"id":7,"rates":{"per_call":18446744073709551616,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4}}`, false, Decision{}},
		{`{"id":7,"rates":{"per_call":1,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4,"per_byte":5}}`, false, Decision{}},
		{`{"id":7,"rates":{"per_call":1,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4}} {}`, false, Decision{}},
		{`{"id":7,"rates":{"per_call":1,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4},"message":"a\u0007b"}`, false, Decision{}},
		{`{"id":7,"rates":{"per_call":1,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4},"message":"line\nbreak"}`, false, Decision{}},
		{"{\"id\":7,\"rates\":{\"per_call\":1,\"store_per_gib_month\":2,\"read_per_gib\":3,\"write_per_gib\":4},\"message\":\"\xff\"}", false, Decision{}},
		{`{"id":7,"rates":{"per_call":1,"store_per_gib_month":2,"read_per_gib":3,"write_per_gib":4},"message":"` + strings.Repeat("é", 129) + `"}`, false, Decision{}},
	} {
		d, err := parseAnswer([]byte(tc.line), 7)
		if !tc.ok {
			require.ErrorIs(t, err, ErrAgentGarbage, tc.line)
			continue
		}
		require.NoError(t, err, tc.line)
		require.Equal(t, tc.d, d)
	}
}

// TestExternalExampleAgent builds examples/pricing-agent and prices with
// it as a real subprocess.
func TestExternalExampleAgent(t *testing.T) {
	bin := buildExample(t)
	f := new(failures)
	var stderr bytes.Buffer
	e, err := NewExternal([]string{bin, "-store", "60000", "-surcharge", "1"},
		WithFallback(fixedAgent{fallbackRates}), WithFailureFunc(f.add), WithAgentStderr(&stderr))
	require.NoError(t, err)
	for _, tc := range []struct {
		used         uint64
		store, write uint64
		message      bool
	}{
		{0, 60_000, 1_000, false},
		{tib / 2, 75_000, 1_250, false},
		{tib - tib/10, 108_600, 1_810, true}, // just over 90 %
		{tib, 120_000, 2_000, true},
	} {
		d, err := e.Price(context.Background(), State{Now: epoch, Capacity: tib, Used: tc.used, Period: time.Hour, Sold: []uint64{1, 2, 3}})
		require.NoError(t, err)
		require.Equal(t, protocol.Rates{PerCall: 10, StorePerGiBMonth: tc.store, ReadPerGiB: 1_000, WritePerGiB: tc.write}, d.Rates)
		require.Equal(t, tc.message, d.Message != "")
		require.NoError(t, checkMessage(d.Message))
	}
	require.Empty(t, f.list())
	require.NoError(t, e.Close())
	require.Empty(t, stderr.String())

	// Given arguments it refuses, it exits, and the fallback answers.
	e, err = NewExternal([]string{bin, "-surcharge", "-1"},
		WithFallback(fixedAgent{fallbackRates}), WithFailureFunc(f.add), WithAgentStderr(&stderr))
	require.NoError(t, err)
	d, err := e.Price(context.Background(), State{Now: epoch})
	require.NoError(t, err)
	require.Equal(t, fromFallback, d)
	require.NoError(t, e.Close())
	require.Len(t, f.list(), 1)
	require.ErrorIs(t, f.list()[0], ErrAgentExited)
	require.Contains(t, stderr.String(), "-surcharge must be")
}

func buildExample(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the example with")
	}
	bin := filepath.Join(t.TempDir(), "pricing-agent")
	cmd := exec.Command(gobin, "build", "-o", bin, "github.com/scripnet/scrip/examples/pricing-agent")
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee), "%v", err)
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
