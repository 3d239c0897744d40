package nomadjob_test

import (
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/server"
)

// The Nomad executor is a server.Executor.
var _ server.Executor = (*nomadjob.Executor)(nil)
