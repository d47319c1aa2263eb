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

// stopProcess suspends the process and its process group (SIGSTOP).
func stopProcess(p *os.Process) error {
	if err := syscall.Kill(-p.Pid, syscall.SIGSTOP); err != nil {
		return p.Signal(syscall.SIGSTOP)
	}
	return nil
}

// continueProcess resumes the process and its process group (SIGCONT).
func continueProcess(p *os.Process) error {
	if err := syscall.Kill(-p.Pid, syscall.SIGCONT); err != nil {
		return p.Signal(syscall.SIGCONT)
	}
	return nil
}
