//go:build unix && !linux

package interop

import (
	"os/exec"
	"syscall"
)

// setProcAttrs puts the driver in its own process group.
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
