package nomadjob

import nomad "github.com/hashicorp/nomad/api"

import "github.com/hyperfunc/hyperfunc/executor"

// FunctionJob and PullJob expose the jobs the executor builds to the
// external tests (validation by a real Nomad).
func (e *Executor) FunctionJob(fn executor.Function, big bool) *nomad.Job {
	return e.functionJob(fn, big)
}

func (e *Executor) PullJob(image string) *nomad.Job { return e.pullJob(image) }
