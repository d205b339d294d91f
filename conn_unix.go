//go:build unix

package main

// conn_unix.go looks at a connection to messageapp, without reading from
// it, to tell whether messageapp has already closed it.

import (
	"errors"
	"net"
	"syscall"
)

// peerClosed reports whether the other end of an idle connection has
// closed it (or reset it, or sent something unasked, which on an idle
// HTTP/1.1 connection means it is done with it), by peeking at the socket
// without waiting and without taking anything from it. It reports false
// when it cannot tell.
func peerClosed(conn net.Conn) bool {
	for {
		wrapped, ok := conn.(interface{ NetConn() net.Conn }) // TLS, or courier's watchedConn
		if !ok {
			break
		}
		conn = wrapped.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	_ = raw.Control(func(fd uintptr) {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: nothing to read, the connection is as idle as it looks.
		// Otherwise end of stream (n == 0), a byte, or an error such as
		// a reset: it is not fit to carry a request.
		closed = !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR)
	})
	return closed
}
