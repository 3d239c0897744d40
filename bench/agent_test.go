package bench

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/hyperfunc/hyperfunc/executor"
	"github.com/hyperfunc/hyperfunc/server"
)

// agentEnv carries an agentSpec (JSON): a test binary started with it runs
// one hyperfunc server instead of the tests, so that the memory benchmark's
// nodes are processes of their own, each with its own RSS.
const agentEnv = "HF_BENCH_AGENT"

// agentSpec is one node of a procCluster. Addresses are fixed by the parent
// so that a node restarted (or wiped) comes back where the others expect it.
type agentSpec struct {
	NodeID    string   `json:"node_id"`
	DataDir   string   `json:"data_dir"`
	HTTPAddr  string   `json:"http_addr"`
	RaftAddr  string   `json:"raft_addr"`
	DebugAddr string   `json:"debug_addr"` // raft stats, outside the API
	Join      []string `json:"join"`
	Expect    int      `json:"expect"`
	// MaxQueuedBytes lifts the per-user stdin bound for the load phase.
	MaxQueuedBytes int64 `json:"max_queued_bytes"`
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(agentEnv); spec != "" {
		os.Exit(runAgent(spec))
	}
	os.Exit(m.Run())
}

// runAgent runs a server until SIGTERM/SIGINT; the parent's SIGKILL is the
// crash of the restart scenarios. Logs go to stderr (a file per node).
func runAgent(raw string) int {
	var sp agentSpec
	if err := json.Unmarshal([]byte(raw), &sp); err != nil {
		fmt.Fprintln(os.Stderr, "agent spec:", err)
		return 2
	}
	s, err := server.New(server.Config{
		NodeID: sp.NodeID, DataDir: sp.DataDir, HTTPAddr: sp.HTTPAddr, RaftAddr: sp.RaftAddr,
		BootstrapExpect: sp.Expect, Join: sp.Join, ClusterKey: "bench-cluster-key-of-32-bytes-at-least",
		MaxQueuedBytes: sp.MaxQueuedBytes,
		// HF_BENCH_SNAPSHOT_MIB: the log bytes between size-triggered
		// snapshots (server.DefaultLogBytesPerSnapshot when unset).
		LogBytesPerSnapshot: int64(envInt("HF_BENCH_SNAPSHOT_MIB", 0)) << 20,
		// Not servertest's Engine: it keeps every call's stdin and stdout
		// (for its assertions), which would be most of the leader's RSS.
		Executor: &fakeExec{events: make(chan executor.Event, 1<<10), async: true},
		Logger:   hclog.New(&hclog.LoggerOptions{Name: sp.NodeID, Level: hclog.Info, Output: os.Stderr}),
	})
	if err == nil {
		err = s.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	ln, err := net.Listen("tcp", sp.DebugAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent debug listener:", err)
		return 1
	}
	// Raft's own stats (term, applied_index, last_snapshot_index): the API
	// shows the applied index only, and follows the leader for the rest.
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(s.Raft().Stats())
	}))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	_ = s.Shutdown(false)
	return 0
}
