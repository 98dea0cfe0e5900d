package h1

import (
	"net"
	"syscall"
)

// alive reports whether a pooled connection is still open: a non-blocking peek finds nothing to read
// (EAGAIN). The server's close (a zero-byte read), an error, or bytes nobody asked for mean it is not.
// Without a read goroutine per connection, this is how a connection the server closed while idle is
// caught before a request is sent on it.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait for data
	})
	return err == nil && open
}
