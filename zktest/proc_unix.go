//go:build unix && !linux

package zktest

import (
	"os/exec"
	"syscall"
)

// setProcAttrs puts the server in its own process group, so it and anything
// it spawns can be signalled together.
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
