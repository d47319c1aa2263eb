//go:build unix

package zktest

import (
	"os"
	"syscall"
)

// terminate asks the process (and its process group) to exit.
func terminate(p *os.Process) {
	_ = p.Signal(syscall.SIGTERM)
	_ = syscall.Kill(-p.Pid, syscall.SIGTERM)
}

// kill forcibly ends the process and its process group.
func kill(p *os.Process) {
	_ = p.Kill()
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
}
