//go:build !linux

package server

import "net"

// pendingInput cannot look at the socket here; the byte counter and idle time still apply.
func pendingInput(net.Conn) bool { return false }
