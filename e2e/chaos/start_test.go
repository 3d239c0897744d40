package chaos

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestNodeStartOnOtherPortsWhenTaken: an agent that exits because a port
// picked for it was taken (CI of 2026-11-30, 21:52: the cluster never formed) is
// started again on new ports, and start returns once it listens. The
// stand-in agent fails its first bind and starts on its second run.
func TestNodeStartOnOtherPortsWhenTaken(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	agent := filepath.Join(dir, "agent.sh")
	script := `#!/bin/sh
echo run >> "` + runs + `"
if [ "$(wc -l < "` + runs + `")" -eq 1 ]; then
	echo 'agent start failed: error="raft listen: bind: address already in use"'
	exit 1
fi
echo 'agent started'
exec sleep 600
`
	if err := os.WriteFile(agent, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, bins: &bins{hyperfunc: agent}, dir: dir, net: newNetwork(),
		double: &double{nomad: "http://127.0.0.1:1"}, logf: t.Logf}
	lb, err := newPublicLB(c)
	if err != nil {
		t.Fatal(err)
	}
	c.lb = lb
	defer lb.Close()
	n := &node{c: c, name: "node1", logPath: filepath.Join(dir, "node1.log"), dataDir: filepath.Join(dir, "data")}
	for _, p := range []**proxy{&n.httpProxy, &n.raftProxy} {
		if *p, err = c.net.newProxy(0, n.realHTTP); err != nil {
			t.Fatal(err)
		}
		defer (*p).Close()
	}
	c.nodes = []*node{n}
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	defer n.stop(syscall.SIGKILL, 0)
	if s := n.State(); s != nodeRunning {
		t.Fatalf("state %v after start, want running", s)
	}
	log, _ := os.ReadFile(n.logPath)
	starts := regexp.MustCompile(`-http-addr (\S+) -raft-addr (\S+)`).FindAllStringSubmatch(string(log), -1)
	if len(starts) != 2 {
		t.Fatalf("%d starts, want 2 (one failed bind, one start):\n%s", len(starts), log)
	}
	if starts[0][1] == starts[1][1] || starts[0][2] == starts[1][2] {
		t.Errorf("started again on the same ports: %v then %v", starts[0][1:], starts[1][1:])
	}
	if got := n.realHTTP(); !strings.HasSuffix(starts[1][1], got) {
		t.Errorf("node's real HTTP address %s, the last start's %s", got, starts[1][1])
	}
}
