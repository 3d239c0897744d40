package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/cachestore"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// TestRestartKeepsCachesAndQueue: every server of a cluster is killed and
// started again in turn, with outputs and log events written before and
// after a snapshot and a call still queued. Each server's disk half is
// rebuilt from its snapshot and log, and all of it is there on every
// server after: outputs, log events and the queued call's stdin.
func TestRestartKeepsCachesAndQueue(t *testing.T) {
	engine := servertest.NewEngine()
	c := servertest.NewCluster(t, 3, servertest.Options{Engine: engine, RaftTuning: func(rc *raft.Config) {
		rc.TrailingLogs = 4
		rc.SnapshotThreshold = 1 << 20 // only the snapshots below
		rc.SnapshotInterval = time.Hour
	}})
	c.WaitForVoters(c.WaitForLeader(), 3)
	fn := createFn(t, c.Client(c.LeaderIndex()), "f", "cat")
	want := map[string]string{}
	calls := func(n int) {
		for i := 0; i < n; i++ {
			stdin := fmt.Sprintf("out-%d", len(want))
			id := call(t, c.Client(c.WaitForLeader()), "f", stdin)
			waitState(t, c.Client(c.WaitForLeader()), id, api.StateFinished)
			want[id] = stdin
		}
	}
	calls(5)
	for i := 0; i < 3; i++ {
		// Raft refuses a snapshot while a configuration entry (a server
		// joining) is not applied yet: asked again until it takes one.
		servertest.Eventually(t, time.Minute, func() error {
			return c.Server(i).Raft().Snapshot().Error()
		})
	}
	calls(5)
	engine.SetUnavailable(true) // the next call stays queued
	queued := call(t, c.Client(c.WaitForLeader()), "f", "queued stdin")
	for i := 0; i < 3; i++ {
		c.Kill(i)
		c.Restart(i)
		c.WaitForLeader()
	}
	// Raft's applied index runs ahead of the FSM (it counts entries handed
	// to it), so the wait is on the state itself; its deadline only
	// catches a server that never gets there.
	for i := 0; i < 3; i++ {
		servertest.Eventually(t, time.Minute, func() error {
			st := c.Server(i).Store()
			for id, out := range want {
				if o, err := st.Output(nil, id); err != nil || o == nil || string(o.Data) != out {
					return fmt.Errorf("server %d after restarts: output of %s is %v (%v), want %q", i, id, o, err, out)
				}
			}
			if u, _ := st.CacheUsage(cachestore.KindLog, fn.Owner+"/"+fn.Name); u.Count < int64(2*len(want)) {
				return fmt.Errorf("server %d after restarts: %d log events", i, u.Count)
			}
			if b, _ := st.Stdin(queued); string(b) != "queued stdin" {
				return fmt.Errorf("server %d after restarts: queued stdin %q", i, b)
			}
			return nil
		})
	}
	engine.SetUnavailable(false)
	waitState(t, c.Client(c.WaitForLeader()), queued, api.StateFinished)
}
