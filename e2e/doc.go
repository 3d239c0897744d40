// Package e2e holds hyperfunc's end-to-end tests: real agent processes
// (built from cmd/hyperfunc), the real hyper CLI and the real Docker engine
// with runsc. They need a Docker engine (scripts/setup-docker.sh starts
// one); without it they skip, or fail when CI is set.
//
//	go test -race ./e2e/
//
// The dockerd restart test lives in e2e/disruptive and runs only with
// HYPERFUNC_DISRUPTIVE=1, alone. The harness is e2e/harness.
package e2e
