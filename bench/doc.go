// Package bench holds hyperfunc's benchmarks (DESIGN.md §9): accepted and
// committed calls per second on an in-process three-node cluster, snapshot
// and restore of a million calls, memory per stored call, output-cache
// rotation, and sync call latency against raw `docker run`. The code is in
// the _test.go files; scripts/bench.sh runs them and prints the ratios, and
// docs/BENCHMARKS.md explains how to read them.
package bench
