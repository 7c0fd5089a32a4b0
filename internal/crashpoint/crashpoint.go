// Package crashpoint lets tests kill a process at a named point of its
// work, the way a power cut or an OOM kill would: no deferred calls, no
// flushing, no closing of files.
//
// A process whose environment has SCRIP_CRASHPOINT=NAME sends itself
// SIGKILL the first time it reaches [Hit](NAME); with
// SCRIP_CRASHPOINT=NAME@N, the N-th time. Without the variable, Hit costs
// one comparison of an empty string.
package crashpoint

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// EnvVar is the environment variable that names the crash point.
const EnvVar = "SCRIP_CRASHPOINT"

var (
	target string // the armed point's name, or "" for none
	nth    int64  = 1
	hits   atomic.Int64
)

func init() {
	v := os.Getenv(EnvVar)
	if v == "" {
		return
	}
	name, count, ok := strings.Cut(v, "@")
	if ok {
		n, err := strconv.ParseInt(count, 10, 64)
		if err != nil || n < 1 {
			return // a malformed value arms nothing
		}
		nth = n
	}
	target = name
}

// Hit kills the process with SIGKILL if it is the armed crash point and
// this is its armed hit. Otherwise it returns at once.
func Hit(name string) {
	if target == "" || name != target {
		return
	}
	if hits.Add(1) == nth {
		kill()
	}
}
