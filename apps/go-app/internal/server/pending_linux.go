package server

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// pendingInput reports whether the kernel holds unread bytes for the connection (SIOCINQ), i.e.
// a request has arrived that net/http has not read yet.
func pendingInput(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	pending := 0
	_ = raw.Control(func(fd uintptr) {
		pending, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	return pending > 0
}
