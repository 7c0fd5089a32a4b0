//go:build unix

package crashpoint

import (
	"os"
	"syscall"
)

func kill() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way; do nothing more meanwhile
}
