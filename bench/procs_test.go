package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// procNode is one agent process of a procCluster.
type procNode struct {
	spec    agentSpec
	cmd     *exec.Cmd
	logPath string
	client  *api.Client
}

// procCluster is 3 agents, each a re-exec of this test binary (TestMain),
// on fixed loopback ports, so RSS is measured per node and a node can be
// SIGKILLed and started again on its data dir.
type procCluster struct {
	t     testing.TB
	nodes []*procNode
	hc    *http.Client
}

// freeAddr is a port below the ephemeral range (harness.FreeAddr): a node
// started again binds its old port, which an outgoing connection could
// have taken meanwhile were it a :0 port.
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := harness.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// startProcCluster starts n agents as servertest.NewCluster does: node i
// joins the ones before it, all expecting n, and waits until every node
// answers healthy.
func startProcCluster(t testing.TB, n int, maxQueuedBytes int64) *procCluster {
	t.Helper()
	c := &procCluster{t: t, hc: httpClient(32)}
	dir := t.TempDir()
	t.Cleanup(c.stopAll)
	var join []string
	for i := 0; i < n; i++ {
		nd := &procNode{spec: agentSpec{
			NodeID: fmt.Sprintf("node%d", i), DataDir: filepath.Join(dir, fmt.Sprintf("node%d", i)),
			HTTPAddr: freeAddr(t), RaftAddr: freeAddr(t), DebugAddr: freeAddr(t),
			Join: append([]string(nil), join...), Expect: n, MaxQueuedBytes: maxQueuedBytes,
		}, logPath: filepath.Join(dir, fmt.Sprintf("node%d.log", i))}
		nd.client = apiClient(t, "http://"+nd.spec.HTTPAddr, c.hc)
		c.nodes = append(c.nodes, nd)
		c.start(nd)
		join = append(join, nd.spec.HTTPAddr)
	}
	for _, nd := range c.nodes {
		c.waitHealthy(nd, 2*time.Minute)
	}
	return c
}

func (c *procCluster) start(nd *procNode) {
	c.t.Helper()
	raw, _ := json.Marshal(nd.spec)
	logf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), agentEnv+"="+string(raw))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	nd.cmd = cmd
}

// kill is a crash: SIGKILL, no leave, no flush.
func (c *procCluster) kill(nd *procNode) {
	_ = nd.cmd.Process.Kill()
	_ = nd.cmd.Wait()
	nd.cmd = nil
}

func (c *procCluster) stopAll() {
	for _, nd := range c.nodes {
		if nd.cmd != nil {
			_ = nd.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, nd := range c.nodes {
		if nd.cmd == nil {
			continue
		}
		done := make(chan struct{})
		go func() { _ = nd.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			c.kill(nd)
		}
		nd.cmd = nil
	}
}

func (c *procCluster) waitHealthy(nd *procNode, d time.Duration) {
	c.t.Helper()
	waitFor(c.t, d, nd.spec.NodeID+" healthy", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		h, err := nd.client.Status().Health(ctx)
		return err == nil && h.OK
	})
}

// raftStats is raft.Raft.Stats() of a node (nil when it does not answer).
func (c *procCluster) raftStats(nd *procNode) map[string]string {
	resp, err := c.hc.Get("http://" + nd.spec.DebugAddr + "/")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st map[string]string
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	return st
}

func statUint(st map[string]string, key string) uint64 {
	v, _ := strconv.ParseUint(st[key], 10, 64)
	return v
}

func (c *procCluster) leader() *procNode { return c.inState("Leader") }

// inState is the first running node whose Raft state is state, or nil.
func (c *procCluster) inState(state string) *procNode {
	for _, nd := range c.nodes {
		if nd.cmd != nil && c.raftStats(nd)["state"] == state {
			return nd
		}
	}
	return nil
}

// waitLeader is the leader, waiting through an election (a busy machine
// may miss heartbeats; the load phase counts those).
func (c *procCluster) waitLeader() *procNode {
	c.t.Helper()
	var ld *procNode
	waitFor(c.t, 2*time.Minute, "a leader", func() bool { ld = c.leader(); return ld != nil })
	return ld
}

func (c *procCluster) follower() *procNode { return c.inState("Follower") }

// procMem is what /proc/<pid>/status says, in bytes.
type procMem struct{ RSS, Anon, File uint64 }

func (c *procCluster) mem(nd *procNode) procMem {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", nd.cmd.Process.Pid))
	if err != nil {
		return procMem{}
	}
	defer f.Close()
	var m procMem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(fs[1], 10, 64)
		switch fs[0] {
		case "VmRSS:":
			m.RSS = kb << 10
		case "RssAnon:":
			m.Anon = kb << 10
		case "RssFile:":
			m.File = kb << 10
		}
	}
	return m
}

// metrics is a node's /metrics, one line per element (ACLs are off).
func (c *procCluster) metrics(nd *procNode) []string {
	resp, err := c.hc.Get("http://" + nd.spec.HTTPAddr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Split(string(b), "\n")
}

// metricSum sums the samples whose line starts with name and contains
// every filter (label matches), e.g. go_memstats_heap_inuse_bytes.
func metricSum(lines []string, name string, filters ...string) float64 {
	var sum float64
next:
	for _, l := range lines {
		if !strings.HasPrefix(l, name+" ") && !strings.HasPrefix(l, name+"{") {
			continue
		}
		for _, f := range filters {
			if !strings.Contains(l, f) {
				continue next
			}
		}
		fs := strings.Fields(l)
		v, _ := strconv.ParseFloat(fs[len(fs)-1], 64)
		sum += v
	}
	return sum
}

// readStale reads a call's output from nd's own replica (?stale: no
// forwarding to the leader).
func (c *procCluster) readStale(nd *procNode, callID string) ([]byte, error) {
	resp, err := c.hc.Get("http://" + nd.spec.HTTPAddr + "/v1/calls/" + callID + "/output?stale")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	return b, err
}

func mib(b float64) float64 { return b / (1 << 20) }
