package server_test

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// TestLeftServerRejoinsOnRestart: a server stopped with SIGTERM leaves the
// cluster; started again on its data dir, it must ask to be a voter again
// (no leader would ever contact it otherwise) and catch up.
func TestLeftServerRejoinsOnRestart(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	leader := c.LeaderIndex()
	f := c.FollowerIndexes()[0]
	c.Leave(f)
	c.WaitForVoters(leader, 2)
	createFn(t, c.Client(leader), "while-away", "cat")
	c.Restart(f)
	c.WaitForVoters(c.LeaderIndex(), 3)
	servertest.Eventually(t, 60*time.Second, func() error {
		fn, err := c.Server(f).Store().Function(nil, "default/while-away")
		if err != nil || fn == nil {
			return fmt.Errorf("the rejoined server has not caught up: %v", err)
		}
		return nil
	})
}

// TestWipedServerRejoins: a server whose data dir is lost comes back at its
// old address with a new ID; the leader replaces the old ID with it (Raft
// refuses a second server at one address), so it is a voter again, catches
// up from a snapshot and the log, and the old ID is gone.
func TestWipedServerRejoins(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	leader := c.WaitForLeader()
	c.WaitForVoters(leader, 3)
	f := -1
	for _, i := range c.FollowerIndexes() {
		if i > 0 { // server 0 joined nobody: it has no peers to ask
			f = i
		}
	}
	oldID := c.Node(f).NodeID
	createFn(t, c.Client(leader), "before", "cat")
	c.Kill(f)
	if err := os.RemoveAll(c.Node(f).DataDir); err != nil {
		t.Fatal(err)
	}
	createFn(t, c.Client(leader), "while-away", "cat")
	c.Restart(f)
	if c.Node(f).NodeID == oldID {
		t.Fatal("the wiped server kept its ID; the test needs a new one")
	}
	servertest.Eventually(t, 60*time.Second, func() error {
		cfg := c.Leader().Raft().GetConfiguration()
		if err := cfg.Error(); err != nil {
			return err
		}
		var ids []string
		for _, srv := range cfg.Configuration().Servers {
			ids = append(ids, string(srv.ID))
		}
		if len(ids) != 3 || !slices.Contains(ids, c.Node(f).NodeID) || slices.Contains(ids, oldID) {
			return fmt.Errorf("voters %v: want the new ID %s in place of %s", ids, c.Node(f).NodeID, oldID)
		}
		return nil
	})
	servertest.Eventually(t, 60*time.Second, func() error {
		for _, name := range []string{"before", "while-away"} {
			if fn, err := c.Server(f).Store().Function(nil, "default/"+name); err != nil || fn == nil {
				return fmt.Errorf("the wiped server has not caught up with %s: %v", name, err)
			}
		}
		return nil
	})
}
