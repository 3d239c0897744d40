// Package servertest runs whole hyperfunc clusters inside one test process:
// n servers on 127.0.0.1:0 listeners with short Raft timers, data under
// t.TempDir(), joined the way -bootstrap-expect and -join join them, and a
// FakeExecutor in place of Docker or Nomad. It follows hashicorp/raft's own
// test harness: wait-for-leader helpers, crash (Kill) and Restart on the
// same data dir and addresses, and conditions polled with a deadline, never
// a sleep.
//
// The FakeExecutor runs calls as goroutines. What a call does is chosen by
// its function's image (Engine.Handle) or command word:
//
//	cat            stdout = stdin (also the default for any other command)
//	echo ARGS...   stdout = ARGS joined by spaces, plus a newline
//	sleep [DUR]    holds until Engine.Release, DUR elapses, the function's
//	               timeout or a cancel; then stdout = stdin
//	exit N         exits N (FAILED, reason exit) with stderr "exit N"
//	fail-start     Start itself fails (not as unavailable)
//	env            stdout = the call's environment, sorted KEY=VALUE lines
//	output N       writes N bytes of 'x' (over the stdout limit: reason output)
//
// Several FakeExecutors (one per server) share one Engine, the way several
// servers share one Docker engine or one Nomad: a call started through one
// server's executor is found again by another's Reconcile.
package servertest
