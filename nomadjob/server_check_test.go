//go:build !noservercheck

package nomadjob_test

import (
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/server"
)

// The Nomad executor is a server.Executor. (Build with -tags noservercheck
// to test this package while the server package does not compile.)
var _ server.Executor = (*nomadjob.Executor)(nil)
