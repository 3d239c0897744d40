package server_test

import (
	"fmt"
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
