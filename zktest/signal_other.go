//go:build !unix

package zktest

import (
	"errors"
	"os"
	"os/exec"
)

func setProcAttrs(cmd *exec.Cmd) {}

// terminate ends the process; without POSIX signals there is no graceful
// variant.
func terminate(p *os.Process) { _ = p.Kill() }

// kill forcibly ends the process.
func kill(p *os.Process) { _ = p.Kill() }

// stopProcess would suspend the process; there are no POSIX signals here.
func stopProcess(*os.Process) error { return errors.ErrUnsupported }

// continueProcess would resume the process; there are no POSIX signals here.
func continueProcess(*os.Process) error { return errors.ErrUnsupported }
