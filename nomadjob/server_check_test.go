package nomadjob_test

import (
	"context"

	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/server"
)

// The Nomad executor is a server.Executor.
var _ server.Executor = (*nomadjob.Executor)(nil)

// It sweeps leftovers: the dispatcher's orphanCleaner (unexported there)
// has this method set.
var _ interface {
	CleanOrphans(ctx context.Context, keep func(callID string) bool) (int, error)
} = (*nomadjob.Executor)(nil)
