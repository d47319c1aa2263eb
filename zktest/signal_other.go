//go:build !unix

package zktest

import (
	"os"
	"os/exec"
)

func setProcAttrs(cmd *exec.Cmd) {}

// terminate ends the process; without POSIX signals there is no graceful
// variant.
func terminate(p *os.Process) { _ = p.Kill() }

// kill forcibly ends the process.
func kill(p *os.Process) { _ = p.Kill() }
