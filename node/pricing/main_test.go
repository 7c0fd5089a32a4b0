package pricing

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// agentEnv, when set, makes the test binary a fake external agent that
// behaves as the variable says (see fakeAgent) instead of running tests.
const agentEnv = "SCRIP_PRICING_TEST_AGENT"

func TestMain(m *testing.M) {
	if mode := os.Getenv(agentEnv); mode != "" {
		os.Exit(fakeAgent(mode))
	}
	goleak.VerifyTestMain(m)
}

// fakeAgent plays an external agent. mode is one behaviour, or
// "file:PATH", in which case the behaviour is read from PATH at start,
// each start is logged to PATH.starts and each request to PATH.requests.
// A good answer is the request's default rates with PerCall + 1.
func fakeAgent(mode string) int {
	var log *os.File
	if path, ok := strings.CutPrefix(mode, "file:"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return 2
		}
		mode = strings.TrimSpace(string(b))
		if f, err := os.OpenFile(path+".starts", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			fmt.Fprintln(f, mode)
			f.Close()
		}
		if log, err = os.OpenFile(path+".requests", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err != nil {
			return 2
		}
		defer log.Close()
	}
	good := func(req AgentRequest) AgentAnswer {
		r := req.Default
		r.PerCall++
		return AgentAnswer{ID: req.ID, Rates: r, Message: "from the agent"}
	}
	out := json.NewEncoder(os.Stdout)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 0, 4096), MaxRequestLine+1)
	for sc.Scan() {
		if log != nil {
			log.Write(append(sc.Bytes(), '\n'))
		}
		var req AgentRequest
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			return 2
		}
		switch mode {
		case "good":
			out.Encode(good(req))
		case "garbage":
			fmt.Println("hello")
		case "hang":
			time.Sleep(time.Hour)
		case "crash":
			fmt.Fprintln(os.Stderr, "boom")
			return 3
		case "exit0":
			return 0
		case "partial":
			fmt.Print(`{"id":`)
			return 0
		case "long":
			fmt.Println(strings.Repeat("x", MaxAnswerLine+1))
		case "wrong-id":
			a := good(req)
			a.ID++
			out.Encode(a)
		case "missing-rate":
			fmt.Printf("{\"id\":%d,\"rates\":{\"per_call\":1,\"store_per_gib_month\":2,\"read_per_gib\":3}}\n", req.ID)
		case "unknown-field":
			fmt.Printf("{\"id\":%d,\"rates\":{\"per_call\":1,\"store_per_gib_month\":2,\"read_per_gib\":3,\"write_per_gib\":4},\"colour\":\"red\"}\n", req.ID)
		case "two-answers":
			out.Encode(good(req))
			out.Encode(good(req))
		case "long-message":
			a := good(req)
			a.Message = strings.Repeat("m", MaxMessageSize+1)
			out.Encode(a)
		default:
			return 2
		}
	}
	return 0
}
