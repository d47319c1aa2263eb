//go:build linux

package interop

import (
	"os/exec"
	"syscall"
)

// setProcAttrs puts the driver in its own process group and has the kernel
// kill it if the test binary dies, so a crashed test leaves no driver
// behind.
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
