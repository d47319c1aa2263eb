//go:build linux

package zktest

import (
	"os/exec"
	"syscall"
)

// setProcAttrs puts the server in its own process group (so it and anything
// it spawns can be signalled together and a terminal's Ctrl-C does not reach
// it first) and asks the kernel to SIGKILL it if the test binary dies, so a
// crashed or timed-out test never leaves a JVM behind.
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
