// Package chaos is the Jepsen-style reliability suite of hyperfunc: three
// real agents (separate processes) on loopback, each behind TCP proxies
// that can partition it from its peers, running calls on the Nomad test
// double, under concurrent load while a seeded schedule kills, pauses,
// restarts and partitions servers and takes the executor down. A checker
// then proves that no acknowledged call was lost or run twice, that every
// output is its input, that the replicas converged, and that the history
// of call states is linearizable (porcupine). See docs/RELIABILITY.md.
//
//	go test -race -run TestChaos ./e2e/chaos -chaos.duration=10m -v
package chaos
