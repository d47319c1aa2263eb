//go:build !unix

package interop

import (
	"os"
	"os/exec"
)

func setProcAttrs(cmd *exec.Cmd) {}

// kill forcibly ends the driver.
func kill(p *os.Process) { _ = p.Kill() }
