// Package testnet holds loopback helpers for tests.
package testnet

import (
	"strconv"
	"syscall"
	"testing"
)

// ClosedAddr returns "127.0.0.1:<port>" of a port nothing listens on: a
// socket bound to it and never listening, held until the test ends. The
// kernel refuses connections to it and gives the port to no one else (a
// port picked with Listen(":0") and closed could be taken by another
// process's listener before the test dials it).
func ClosedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
}
