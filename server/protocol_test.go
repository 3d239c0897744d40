package server_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/fsm"
	"github.com/hyperfunc/hyperfunc/server"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// TestRollingUpgradeKeepsOldEntryTypes: while one server of the cluster
// records an older Protocol (a rolling upgrade half done), the leader
// stages large payloads in the entry type that server applies (an older
// version stops at a type it does not know); once it records the new
// Protocol, the leader writes the new type.
func TestRollingUpgradeKeepsOldEntryTypes(t *testing.T) {
	old := true // server 2 runs the older version
	c := servertest.NewCluster(t, 3, servertest.Options{Configure: func(i int, cfg *server.Config) {
		if i == 2 && old {
			server.AnnounceProtocol(cfg, 0)
		}
	}})
	c.WaitForLeader()
	leader := func() *server.Server { return c.Server(c.LeaderIndex()) }
	servertest.Eventually(t, 60*time.Second, func() error {
		ms, _ := leader().Store().Members(nil)
		if len(ms) != 3 {
			return fmt.Errorf("%d member records", len(ms))
		}
		return nil
	})
	if got := server.StageType(leader()); got != fsm.PayloadStageType {
		t.Fatalf("with an old server in the cluster the leader stages in %s", got)
	}
	createFn(t, c.Client(c.LeaderIndex()), "echo", "cat")
	stdin := bytes.Repeat([]byte{1, 2, 3, 0}, 200<<10) // 800 KiB: staged
	id, err := c.Client(c.LeaderIndex()).Calls().Call(ctx(t), "echo", bytes.NewReader(stdin), nil)
	if err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 60*time.Second, func() error {
		rc, _, err := c.Client(c.LeaderIndex()).Calls().Output(ctx(t), id, false)
		if err != nil || rc == nil {
			return fmt.Errorf("output of %s: %v", id, err)
		}
		defer rc.Close()
		out, _ := io.ReadAll(rc)
		if !bytes.Equal(out, stdin) {
			return fmt.Errorf("%d bytes in, %d out", len(stdin), len(out))
		}
		return nil
	})
	// The old server is upgraded: it restarts announcing this build's
	// Protocol and updates its record.
	c.Kill(2)
	old = false
	c.Restart(2)
	servertest.Eventually(t, 60*time.Second, func() error {
		if c.LeaderIndex() < 0 {
			return fmt.Errorf("no leader")
		}
		if got := server.StageType(leader()); got != fsm.PayloadStageBinType {
			return fmt.Errorf("leader stages in %s", got)
		}
		return nil
	})
}
