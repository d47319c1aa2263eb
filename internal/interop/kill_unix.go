//go:build unix

package interop

import (
	"os"
	"syscall"
)

// kill forcibly ends the driver and its process group.
func kill(p *os.Process) {
	_ = p.Kill()
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
}
