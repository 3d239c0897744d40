package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/fsm"
	"github.com/hyperfunc/hyperfunc/server"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

func TestClusterElectsOneLeaderAllAgree(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	leader := c.Leader()
	if leader == nil {
		t.Fatal("no leader after WaitForLeader")
	}
	if got := len(c.Followers()); got != 2 {
		t.Fatalf("%d followers, want 2", got)
	}
	for i := range c.N() {
		var addr string
		r := do(t, http.MethodGet, c.URL(i)+"/v1/status/leader", "", nil).want(t, 200)
		if err := json.Unmarshal(r.Body, &addr); err != nil || addr != leader.RaftAddr() {
			t.Fatalf("server %d says the leader is %q, want %s", i, r.Body, leader.RaftAddr())
		}
		peers, err := c.Client(i).Status().Peers(ctx(t))
		if err != nil || len(peers) != 3 {
			t.Fatalf("server %d peers %v (%v), want 3", i, peers, err)
		}
	}
}

func TestClusterWritesAnywhereReadsEverywhere(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	for i := range c.N() {
		name := fmt.Sprintf("via-%d", i)
		createFn(t, c.Client(i), name, "cat")
		// A consistent read right after the write sees it on every server:
		// followers forward it to the leader.
		for j := range c.N() {
			if _, _, err := c.Client(j).Functions().Info(ctx(t), name, nil); err != nil {
				t.Fatalf("consistent read of %s on server %d: %v", name, j, err)
			}
		}
	}
	// A stale read is answered by the follower itself, from its replica.
	for _, i := range c.FollowerIndexes() {
		servertest.Eventually(t, 60*time.Second, func() error {
			fs, meta, err := c.Client(i).Functions().List(ctx(t), nil, &api.QueryOptions{Stale: true})
			if err != nil {
				return err
			}
			if len(fs) != 3 || meta.LastIndex == 0 {
				return fmt.Errorf("server %d lists %d functions at index %d", i, len(fs), meta.LastIndex)
			}
			return nil
		})
	}
	// A write through a follower answers like one through the leader.
	f := c.FollowerIndexes()[0]
	id := call(t, c.Client(f), "via-0", "hello")
	waitState(t, c.Client(f), id, api.StateFinished)
}

// TestClusterLeaderKilledNoAcknowledgedWriteLost kills the leader after
// writes were acknowledged and finds every one of them on the new leader.
func TestClusterLeaderKilledNoAcknowledgedWriteLost(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	old := c.WaitForLeader()
	c.WaitForVoters(old, 3) // a cluster still forming may change leaders
	var ids []string
	for i := range 10 {
		via := i % c.N()
		createFn(t, c.Client(via), fmt.Sprintf("fn-%d", i), "sleep")
		ids = append(ids, call(t, c.Client(via), fmt.Sprintf("fn-%d", i), strconv.Itoa(i)))
	}
	c.Kill(old)
	nl := c.WaitForLeader()
	if nl == old {
		t.Fatalf("killed server %d still leads", old)
	}
	cl := c.Client(nl)
	fs, _, err := cl.Functions().List(ctx(t), nil, nil)
	if err != nil || len(fs) != 10 {
		t.Fatalf("new leader lists %d functions (%v), want 10", len(fs), err)
	}
	c.Engine.ReleaseAll()
	for i, id := range ids {
		got := waitState(t, cl, id, api.StateFinished)
		out, _, err := cl.Calls().Output(ctx(t), got.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 8)
		n, _ := out.Read(b)
		out.Close()
		if string(b[:n]) != strconv.Itoa(i) {
			t.Fatalf("call %d output %q", i, b[:n])
		}
		if r := c.Engine.Runs(id); r != 1 {
			t.Fatalf("call %d ran %d times", i, r)
		}
	}
	// And the cluster of two takes writes.
	createFn(t, c.Client(nl), "after-failover", "cat")
}

func functionCount(s interface{ Store() *fsm.Store }) int {
	fs, _ := s.Store().Functions(nil, "")
	return len(fs)
}

func TestClusterRestartedFollowerCatchesUpFromLog(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	f := c.FollowerIndexes()[0]
	c.Kill(f)
	leader := c.LeaderIndex()
	for i := range 20 {
		createFn(t, c.Client(leader), fmt.Sprintf("fn-%d", i), "cat")
	}
	c.Restart(f)
	servertest.Eventually(t, 60*time.Second, func() error {
		if n := functionCount(c.Server(f)); n != 20 {
			return fmt.Errorf("restarted follower has %d functions", n)
		}
		return nil
	})
	if idx := c.Server(f).Raft().Stats()["last_snapshot_index"]; idx != "0" {
		t.Fatalf("follower caught up through a snapshot (%s); this test wants the log", idx)
	}
}

func TestClusterRestartedFollowerCatchesUpFromSnapshot(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{RaftTuning: func(rc *raft.Config) {
		rc.TrailingLogs = 4
		rc.SnapshotThreshold = 1 << 20 // only the explicit snapshot below
		rc.SnapshotInterval = time.Hour
	}, Configure: func(_ int, cfg *server.Config) {
		// Small segments, so the log behind the snapshot is really gone
		// (raft-wal deletes it a segment at a time).
		cfg.RaftSegmentBytes = 4 << 10
	}})
	f := c.FollowerIndexes()[0]
	c.Kill(f)
	leader := c.LeaderIndex()
	for i := range 30 {
		createFn(t, c.Client(leader), fmt.Sprintf("fn-%d", i), "cat")
	}
	if err := c.Server(leader).Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// Entries after the snapshot must reach the follower through the log.
	createFn(t, c.Client(leader), "after-snapshot", "cat")
	c.Restart(f)
	servertest.Eventually(t, 60*time.Second, func() error {
		if n := functionCount(c.Server(f)); n != 31 {
			return fmt.Errorf("restarted follower has %d functions", n)
		}
		return nil
	})
	if idx := c.Server(f).Raft().Stats()["last_snapshot_index"]; idx == "0" {
		t.Fatal("follower did not install a snapshot")
	}
	// Reads on the follower answer from the restored store.
	if _, _, err := c.Client(f).Functions().Info(ctx(t), "fn-7", &api.QueryOptions{Stale: true}); err != nil {
		t.Fatalf("stale read on the restored follower: %v", err)
	}
}

// TestClusterMinorityRefusesWrites stops two of three servers; the one
// left (the old leader, which must step down) answers writes with a clear
// 503 (after holding them for the apply timeout in case a leader comes
// back), not a hang. The deadlines only catch hangs: how fast is not
// asserted, a loaded machine may be slow.
func TestClusterMinorityRefusesWrites(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	leader := c.LeaderIndex()
	for _, i := range c.FollowerIndexes() {
		c.Kill(i)
	}
	start := time.Now()
	client := &http.Client{Timeout: 45 * time.Second}
	servertest.Eventually(t, 90*time.Second, func() error {
		req, _ := http.NewRequest(http.MethodPost, c.URL(leader)+"/v1/functions", jsonBody(`{"name":"lonely","image":"busybox"}`))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		r := readResponse(t, resp)
		if r.Code != http.StatusServiceUnavailable {
			return fmt.Errorf("HTTP %d: %s", r.Code, r.Body)
		}
		t.Logf("503 after %s: %s", time.Since(start).Round(time.Millisecond), r.errorBody(t))
		return nil
	})
	// Consistent reads fail the same way; a stale read still answers.
	do(t, http.MethodGet, c.URL(leader)+"/v1/functions", "", nil).want(t, http.StatusServiceUnavailable).errorBody(t)
	do(t, http.MethodGet, c.URL(leader)+"/v1/functions?stale", "", nil).want(t, http.StatusOK)
}

func TestClusterRemovePeerAndGracefulLeave(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	leader := c.LeaderIndex()
	fs := c.FollowerIndexes()
	dead, other := fs[0], fs[1]
	deadID := c.Node(dead).NodeID
	c.Kill(dead)
	// operator raft remove-peer, sent to a follower (forwarded).
	if err := c.Client(other).Operator().RemovePeer(ctx(t), deadID); err != nil {
		t.Fatalf("remove-peer: %v", err)
	}
	c.WaitForVoters(leader, 2)
	peers, err := c.Client(leader).Operator().RaftPeers(ctx(t))
	if err != nil || len(peers) != 2 {
		t.Fatalf("raft configuration %v (%v), want 2 servers", peers, err)
	}
	for _, p := range peers {
		if p.ID == deadID {
			t.Fatalf("removed server %s still listed", deadID)
		}
	}
	if err := c.Client(leader).Operator().RemovePeer(ctx(t), "no-such-server"); api.StatusCode(err) != 404 {
		t.Fatalf("removing an unknown server: %v, want 404", err)
	}
	// The leader leaves gracefully: it hands leadership over and is
	// removed, so the survivor is a working one-server cluster.
	c.Leave(leader)
	c.WaitForVoters(other, 1)
	if nl := c.WaitForLeader(); nl != other {
		t.Fatalf("server %d leads, want %d", nl, other)
	}
	createFn(t, c.Client(other), "after-leave", "cat")
}

// TestRunningCallGoneAfterLeaderChangeEndsLost: a call the executor had
// confirmed RUNNING, and no longer knows when a new leader asks (its
// engine was reset, or was the old leader's own), ends FAILED "lost": it
// ran, so it must not run again, and it must not stay RUNNING for ever.
func TestRunningCallGoneAfterLeaderChangeEndsLost(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	old := c.WaitForLeader()
	c.WaitForVoters(old, 3)
	createFn(t, c.Client(old), "f", "sleep")
	id := call(t, c.Client(old), "f", "")
	waitState(t, c.Client(old), id, api.StateRunning)
	c.Engine.Forget(id)
	c.Kill(old)
	got := waitState(t, c.Client(c.WaitForLeader()), id, api.StateFailed)
	if got.Reason != api.ReasonLost {
		t.Fatalf("the lost call ended %s with reason %q (%s), want %q", got.State, got.Reason, got.Message, api.ReasonLost)
	}
	if n := c.Engine.Starts(id); n != 1 {
		t.Fatalf("the lost call was started %d times, want once", n)
	}
}
