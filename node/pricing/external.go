package pricing

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Defaults of [NewExternal].
const (
	// DefaultAnswerTimeout bounds the wait for each answer, in real time.
	DefaultAnswerTimeout = 5 * time.Second
	// DefaultMinBackoff is the wait before the first restart after a
	// failure.
	DefaultMinBackoff = time.Second
	// DefaultMaxBackoff bounds the wait before a restart; the wait doubles
	// with each failure in a row up to it.
	DefaultMaxBackoff = 5 * time.Minute
)

// closeGrace is how long [External.Close] lets the agent exit by itself
// once its input is closed, and how long a failure report waits for the
// exit status.
const closeGrace = 500 * time.Millisecond

// External is an [Agent] that asks an external program: any program that
// reads requests from its standard input and writes answers to its
// standard output, one JSON object a line (newline-delimited JSON, UTF-8).
//
// For each call of Price, External writes one [AgentRequest] line and
// reads one [AgentAnswer] line, which must echo the request's ID, give
// all four rates and nothing unknown, and be at most [MaxAnswerLine]
// bytes long. Standard output carries answers only; the program may log
// to standard error (see [WithAgentStderr]). Requests come one at a time,
// each after the previous answer. The program is started at the first
// call and runs until [External.Close], which closes its input and kills
// it if it has not exited within half a second.
//
// When the program misbehaves — it cannot be started, exits, answers
// garbage, or does not answer within the timeout — External kills it,
// answers this call and every call until the restart from its fallback
// agent, and starts it again at the first call after a backoff: 1 s after
// the first failure in a row, doubling up to 5 min (the defaults), timed
// on State.Now. A good answer resets the backoff. Every failure is passed
// to the function of [WithFailureFunc]. The fallback agent prices every
// call, answered by the program or not, so that it is warm when it takes
// over; its rates go to the program as the request's default.
//
// External returns the program's rates as they are: an operator's floor
// and cap, if wanted, are the caller's to apply ([Limits.Apply]). It is
// safe for concurrent use; calls are answered one at a time.
type External struct {
	argv []string
	o    externalOptions

	mu      sync.Mutex // held for a whole exchange
	p       *proc
	nextID  uint64
	fails   int
	retryAt time.Time
	closed  bool

	wg sync.WaitGroup // the goroutines of every process started
}

var (
	_ Agent     = (*External)(nil)
	_ io.Closer = (*External)(nil)
)

// ExternalOption configures [NewExternal].
type ExternalOption func(*externalOptions) error

type externalOptions struct {
	fallback   Agent
	timeout    time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	stderr     io.Writer
	onFailure  func(error)
}

// WithFallback sets the agent that answers when the program does not.
// Default: [NewTargetAgent] with its defaults.
func WithFallback(a Agent) ExternalOption {
	return func(o *externalOptions) error {
		if a == nil {
			return fmt.Errorf("%w: nil fallback agent", ErrArgument)
		}
		o.fallback = a
		return nil
	}
}

// WithAnswerTimeout bounds the wait for each answer. Default:
// [DefaultAnswerTimeout].
func WithAnswerTimeout(d time.Duration) ExternalOption {
	return func(o *externalOptions) error {
		if d <= 0 {
			return fmt.Errorf("%w: answer timeout %v", ErrArgument, d)
		}
		o.timeout = d
		return nil
	}
}

// WithRestartBackoff sets the first and the longest wait before a
// restart, 0 < lo ≤ hi. Default: [DefaultMinBackoff],
// [DefaultMaxBackoff].
func WithRestartBackoff(lo, hi time.Duration) ExternalOption {
	return func(o *externalOptions) error {
		if lo <= 0 || hi < lo {
			return fmt.Errorf("%w: backoff %v to %v", ErrArgument, lo, hi)
		}
		o.minBackoff, o.maxBackoff = lo, hi
		return nil
	}
}

// WithAgentStderr sends the program's standard error to w. Default: it is
// discarded.
func WithAgentStderr(w io.Writer) ExternalOption {
	return func(o *externalOptions) error { o.stderr = w; return nil }
}

// WithFailureFunc sets a function called with every failure of the
// program, an error wrapping [ErrAgentStart], [ErrAgentExited],
// [ErrAgentTimeout] or [ErrAgentGarbage]; for logs and metrics. It is
// called with External's lock held and must not call back into it.
// Default: none.
func WithFailureFunc(f func(error)) ExternalOption {
	return func(o *externalOptions) error { o.onFailure = f; return nil }
}

// NewExternal returns an agent that runs the program argv[0] with the
// arguments argv[1:] (a name without a slash is looked up in PATH). The
// program is not started until the first call of Price.
//
// Options and their defaults: [WithFallback] ([NewTargetAgent] with its
// defaults), [WithAnswerTimeout] (5 s), [WithRestartBackoff] (1 s to
// 5 min), [WithAgentStderr] (discarded), [WithFailureFunc] (none).
func NewExternal(argv []string, opts ...ExternalOption) (*External, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("%w: no agent program", ErrArgument)
	}
	o := externalOptions{
		timeout:    DefaultAnswerTimeout,
		minBackoff: DefaultMinBackoff,
		maxBackoff: DefaultMaxBackoff,
	}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, err
		}
	}
	if o.fallback == nil {
		a, err := NewTargetAgent()
		if err != nil {
			return nil, err
		}
		o.fallback = a
	}
	return &External{argv: append([]string(nil), argv...), o: o}, nil
}

// Price asks the program for the rates to publish in s, or the fallback
// agent if the program misbehaves or is waiting to be restarted. It
// returns an error only if ctx ends first; the program is then stopped,
// to be started afresh at the next call, without counting a failure.
func (e *External) Price(ctx context.Context, s State) (Decision, error) {
	def, err := e.o.fallback.Price(ctx, s)
	if err != nil {
		return Decision{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return def, nil
	}
	if e.p == nil {
		if s.Now.Before(e.retryAt) {
			return def, nil
		}
		p, err := e.start()
		if err != nil {
			e.fail(s.Now, err)
			return def, nil
		}
		e.p = p
	}
	d, err := e.exchange(ctx, s, def)
	switch {
	case err == nil:
		e.fails = 0
		return d, nil
	case ctx.Err() != nil:
		e.stop(0)
		return Decision{}, ctx.Err()
	default:
		e.fail(s.Now, err)
		return def, nil
	}
}

// Close stops the program: it closes the program's input, waits half a
// second for it to exit and then kills it. Later calls of Price are
// answered by the fallback agent. Close waits for a call in progress.
func (e *External) Close() error {
	e.mu.Lock()
	e.closed = true
	e.stop(closeGrace)
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

// fail stops the process, sets the next restart and reports err.
func (e *External) fail(now time.Time, err error) {
	if e.p != nil && errors.Is(err, ErrAgentExited) {
		err = e.p.withStatus(err)
	}
	e.stop(0)
	e.fails++
	wait := e.o.minBackoff
	for i := 1; i < e.fails && wait < e.o.maxBackoff; i++ {
		wait *= 2
	}
	e.retryAt = now.Add(min(wait, e.o.maxBackoff))
	if e.o.onFailure != nil {
		e.o.onFailure(err)
	}
}

// proc is one run of the program.
type proc struct {
	cmd    *exec.Cmd
	stdin  *os.File // our end
	stdout *os.File // our end
	lines  chan lineResult
	quit   chan struct{} // closed to stop the reader
	exited chan struct{} // closed when Wait has returned
	status error         // Wait's result, once exited is closed
}

// lineResult is one line read, or why no more can be.
type lineResult struct {
	line []byte
	err  error
}

// start runs the program with its standard input and output on pipes of
// our own, so that Wait never closes a pipe before we have read it all.
func (e *External) start() (*proc, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAgentStart, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("%w: %w", ErrAgentStart, err)
	}
	cmd := exec.Command(e.argv[0], e.argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, e.o.stderr
	cmd.WaitDelay = closeGrace // for stderr copying held up by grandchildren
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrAgentStart, e.argv[0], err)
	}
	p := &proc{
		cmd:    cmd,
		stdin:  inW,
		stdout: outR,
		lines:  make(chan lineResult, 1),
		quit:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	e.nextID = 0
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		p.read()
	}()
	go func() {
		defer e.wg.Done()
		p.status = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// read passes the lines of the program's output to p.lines until an
// error, which it passes last, or until p.quit is closed.
func (p *proc) read() {
	br := bufio.NewReaderSize(p.stdout, MaxAnswerLine+1)
	for {
		line, err := br.ReadSlice('\n')
		var r lineResult
		switch {
		case err == nil:
			r.line = append([]byte(nil), line...)
		case errors.Is(err, bufio.ErrBufferFull):
			r.err = fmt.Errorf("%w: line over %d bytes", ErrAgentGarbage, MaxAnswerLine)
		case errors.Is(err, io.EOF) && len(line) > 0:
			r.err = fmt.Errorf("%w: output closed within a line", ErrAgentExited)
		default:
			r.err = fmt.Errorf("%w: output closed: %w", ErrAgentExited, err)
		}
		select {
		case p.lines <- r:
		case <-p.quit:
			return
		}
		if r.err != nil {
			return
		}
	}
}

// withStatus adds the program's exit status to err if the program exits
// soon.
func (p *proc) withStatus(err error) error {
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-p.exited:
		if p.status != nil {
			return fmt.Errorf("%w (%v)", err, p.status)
		}
		return fmt.Errorf("%w (exit status 0)", err)
	case <-t.C:
		return err
	}
}

// stop ends the current process, if any: it closes its input, waits up to
// grace for it to exit, then kills it. The reader and waiter goroutines
// end on their own; Close waits for them.
func (e *External) stop(grace time.Duration) {
	p := e.p
	if p == nil {
		return
	}
	e.p = nil
	p.stdin.Close()
	if grace > 0 {
		t := time.NewTimer(grace)
		select {
		case <-p.exited:
		case <-t.C:
		}
		t.Stop()
	}
	p.cmd.Process.Kill() // an error means it has exited already
	close(p.quit)
	p.stdout.Close()
}

// exchange sends one request and reads its answer.
func (e *External) exchange(ctx context.Context, s State, def Decision) (Decision, error) {
	p := e.p
	e.nextID++
	id := e.nextID
	line, err := newAgentRequest(id, s, def.Rates)
	if err != nil {
		return Decision{}, err
	}
	line = append(line, '\n')
	timer := time.NewTimer(e.o.timeout)
	defer timer.Stop()
	written := make(chan error, 1)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		// A write blocks only while the program does not read; stop
		// closes the pipe, which ends it.
		_, err := p.stdin.Write(line)
		written <- err
	}()
	for {
		select {
		case err := <-written:
			if err != nil {
				return Decision{}, fmt.Errorf("%w: writing the request: %w", ErrAgentExited, err)
			}
			written = nil
		case r := <-p.lines:
			if r.err != nil {
				return Decision{}, r.err
			}
			return parseAnswer(r.line, id)
		case <-timer.C:
			return Decision{}, fmt.Errorf("%w: no answer within %v", ErrAgentTimeout, e.o.timeout)
		case <-ctx.Done():
			return Decision{}, ctx.Err()
		}
	}
}
