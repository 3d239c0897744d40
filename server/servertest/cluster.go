package servertest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server"
)

// RootToken is the bootstrap admin secret of clusters with ACLs on.
const RootToken = "servertest-root-token"

var rootTokenHash = func() string {
	h := sha256.Sum256([]byte(RootToken))
	return hex.EncodeToString(h[:])
}()

// ClusterKey is the internal-endpoint secret of every test cluster.
const ClusterKey = "servertest-cluster-key"

// Options shape a test cluster.
type Options struct {
	ACL bool
	// Engine is shared by the servers' executors; a new one when nil.
	Engine *Engine
	// Configure adjusts server i's config before it starts (quotas,
	// limits, cache caps). It runs again on Restart.
	Configure func(i int, cfg *server.Config)
	// RaftTuning runs after the short test timers are set.
	RaftTuning func(*raft.Config)
	// LogLevel of the servers; Info when zero.
	LogLevel hclog.Level
}

// Node is one server slot of a cluster; Server is nil while it is down.
type Node struct {
	Index    int
	Server   *server.Server
	Exec     *FakeExecutor
	Log      *LogBuffer
	DataDir  string
	HTTPAddr string
	RaftAddr string
	NodeID   string
	join     []string
}

// Cluster is n servers in this process.
type Cluster struct {
	t      testing.TB
	opts   Options
	Engine *Engine

	mu    sync.Mutex
	nodes []*Node
}

// ShortTimers are Raft timers for loopback clusters: elections within a
// second, still calm under -race on two cores busy with other work (at
// 200/100 ms a load of 15 made leaders step down mid-test).
func ShortTimers(rc *raft.Config) {
	rc.HeartbeatTimeout = 500 * time.Millisecond
	rc.ElectionTimeout = 500 * time.Millisecond
	rc.LeaderLeaseTimeout = 400 * time.Millisecond
	rc.CommitTimeout = 10 * time.Millisecond
}

// NewCluster starts n servers and waits for a leader. Server i joins the
// servers started before it, all with -bootstrap-expect n, so the last one
// to start sees n servers and bootstraps the cluster the others then
// follow, as a -join'ed cluster does. Everything stops at the test's end.
func NewCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if opts.Engine == nil {
		opts.Engine = NewEngine()
	}
	c := &Cluster{t: t, opts: opts, Engine: opts.Engine}
	// TempDir first: cleanups run last-in first-out, so the servers stop
	// before their data dirs go (a snapshot may be on its way to disk).
	dir := t.TempDir()
	t.Cleanup(c.shutdown)
	var joined []string
	for i := 0; i < n; i++ {
		nd := &Node{
			Index: i, DataDir: filepath.Join(dir, fmt.Sprintf("node%d", i)),
			HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", join: append([]string(nil), joined...),
		}
		c.nodes = append(c.nodes, nd)
		c.start(nd, n)
		joined = append(joined, nd.HTTPAddr)
	}
	c.WaitForLeader()
	return c
}

func (c *Cluster) start(nd *Node, expect int) {
	c.t.Helper()
	if nd.Log == nil {
		nd.Log = &LogBuffer{}
	}
	nd.Exec = c.Engine.NewExecutor()
	level := c.opts.LogLevel
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	cfg := server.Config{
		DataDir: nd.DataDir, HTTPAddr: nd.HTTPAddr, RaftAddr: nd.RaftAddr,
		BootstrapExpect: expect, Join: nd.join,
		ACL: c.opts.ACL, ClusterKey: ClusterKey,
		// The agent's default: it also bounds a follower's forwarded
		// enqueue (ApplyTimeout + 5 s, then a 504 the client does not
		// retry), which a busy machine could pass at 5 s.
		ApplyTimeout: 10 * time.Second,
		Executor:     nd.Exec,
		Logger:       hclog.New(&hclog.LoggerOptions{Name: fmt.Sprintf("node%d", nd.Index), Level: level, Output: nd.Log}),
		RaftTuning: func(rc *raft.Config) {
			ShortTimers(rc)
			if c.opts.RaftTuning != nil {
				c.opts.RaftTuning(rc)
			}
		},
	}
	if c.opts.ACL {
		cfg.BootstrapToken = RootToken
	}
	if c.opts.Configure != nil {
		c.opts.Configure(nd.Index, &cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		c.t.Fatalf("server %d: %v", nd.Index, err)
	}
	if err := s.Start(); err != nil {
		c.t.Fatalf("server %d: %v", nd.Index, err)
	}
	c.mu.Lock()
	nd.Server, nd.HTTPAddr, nd.RaftAddr, nd.NodeID = s, s.HTTPAddr(), s.RaftAddr(), s.NodeID()
	c.mu.Unlock()
}

func (c *Cluster) shutdown() {
	c.Engine.ReleaseAll()
	c.Engine.ReleaseStarts()
	for _, nd := range c.nodes {
		if nd.Server != nil {
			if err := nd.Server.Shutdown(false); err != nil {
				c.t.Logf("server %d shutdown: %v", nd.Index, err)
			}
			nd.Server = nil
		}
		if nd.Exec != nil {
			nd.Exec.Close()
		}
		if c.t.Failed() && nd.Log != nil {
			c.t.Logf("---- server %d (%s) log tail ----\n%s", nd.Index, nd.HTTPAddr, nd.Log.Tail(60))
		}
	}
}

// N is the number of server slots.
func (c *Cluster) N() int { return len(c.nodes) }

// Node is server slot i.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// Server is server i (nil while it is down).
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].Server
}

// Live lists the indexes of the servers that run.
func (c *Cluster) Live() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, nd := range c.nodes {
		if nd.Server != nil {
			out = append(out, nd.Index)
		}
	}
	return out
}

// LeaderIndex is the index of the server that leads now, or -1.
func (c *Cluster) LeaderIndex() int {
	for _, i := range c.Live() {
		if s := c.Server(i); s != nil && s.IsLeader() {
			return i
		}
	}
	return -1
}

// Leader is the server that leads now, or nil.
func (c *Cluster) Leader() *server.Server {
	if i := c.LeaderIndex(); i >= 0 {
		return c.Server(i)
	}
	return nil
}

// Followers are the live servers that do not lead.
func (c *Cluster) Followers() []*server.Server {
	var out []*server.Server
	for _, i := range c.FollowerIndexes() {
		out = append(out, c.Server(i))
	}
	return out
}

// FollowerIndexes are the indexes of the live servers that do not lead.
func (c *Cluster) FollowerIndexes() []int {
	var out []int
	for _, i := range c.Live() {
		if s := c.Server(i); s != nil && !s.IsLeader() {
			out = append(out, i)
		}
	}
	return out
}

// WaitForLeader waits until exactly one live server leads, every live
// server follows it and knows its HTTP address (so it can forward), and,
// with ACLs on, the bootstrap token works everywhere. It returns the
// leader's index.
func (c *Cluster) WaitForLeader() int {
	c.t.Helper()
	var leader int
	Eventually(c.t, 60*time.Second, func() error {
		leader = -1
		live := c.Live()
		for _, i := range live {
			if c.Server(i).IsLeader() {
				if leader >= 0 {
					return fmt.Errorf("servers %d and %d both lead", leader, i)
				}
				leader = i
			}
		}
		if leader < 0 {
			return errors.New("no leader")
		}
		ls := c.Server(leader)
		for _, i := range live {
			s := c.Server(i)
			if addr, _ := s.Raft().LeaderWithID(); string(addr) != ls.RaftAddr() {
				return fmt.Errorf("server %d follows %q, not %s", i, addr, ls.RaftAddr())
			}
			if !knowsMember(s, ls) {
				return fmt.Errorf("server %d does not know the leader's HTTP address yet", i)
			}
			if c.opts.ACL {
				if tok, _ := s.Store().TokenBySecretHash(rootTokenHash); tok == nil {
					return fmt.Errorf("server %d has no bootstrap token yet", i)
				}
			}
		}
		return nil
	})
	return leader
}

func knowsMember(s, m *server.Server) bool {
	ms, _ := s.Store().Members(nil)
	for _, x := range ms {
		if x.ID == m.NodeID() && x.HTTPAddr == m.HTTPAddr() {
			return true
		}
	}
	return false
}

// WaitForVoters waits until server i's Raft configuration has n voters.
func (c *Cluster) WaitForVoters(i, n int) {
	c.t.Helper()
	Eventually(c.t, 60*time.Second, func() error {
		s := c.Server(i)
		if s == nil {
			return fmt.Errorf("server %d is down", i)
		}
		f := s.Raft().GetConfiguration()
		if err := f.Error(); err != nil {
			return err
		}
		v := 0
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				v++
			}
		}
		if v != n {
			return fmt.Errorf("server %d sees %d voters, want %d", i, v, n)
		}
		return nil
	})
}

// Kill stops server i the way a crash does: no leave, Raft state stays on
// disk, and its calls go on running in the engine.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	c.stop(i, false)
}

// Leave stops server i the way SIGTERM does: it leaves the cluster first.
func (c *Cluster) Leave(i int) {
	c.t.Helper()
	c.stop(i, true)
}

func (c *Cluster) stop(i int, leave bool) {
	c.mu.Lock()
	nd := c.nodes[i]
	s := nd.Server
	nd.Server = nil
	c.mu.Unlock()
	if s == nil {
		c.t.Fatalf("server %d is already down", i)
	}
	nd.Exec.Close()
	if err := s.Shutdown(leave); err != nil {
		c.t.Logf("server %d shutdown: %v", i, err)
	}
}

// Restart starts server i again on its data dir and addresses, with a new
// executor on the same engine (a restarted agent process).
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	if nd.Server != nil {
		c.t.Fatalf("server %d is running", i)
	}
	c.start(nd, len(c.nodes))
}

// Client is an API client of server i with the root token (ACLs on) or
// none.
func (c *Cluster) Client(i int) *api.Client {
	if c.opts.ACL {
		return c.ClientWithToken(i, RootToken)
	}
	return c.ClientWithToken(i, "")
}

// ClientWithToken is an API client of server i with this token.
func (c *Cluster) ClientWithToken(i int, token string) *api.Client {
	cl, err := api.NewClient(&api.Config{Address: c.URL(i), Token: token})
	if err != nil {
		c.t.Fatalf("client: %v", err)
	}
	return cl
}

// URL is the base URL of server i's HTTP API.
func (c *Cluster) URL(i int) string { return "http://" + c.nodes[i].HTTPAddr }

// Logs is every server's log output so far.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, nd := range c.nodes {
		if nd.Log != nil {
			b.WriteString(nd.Log.String())
		}
	}
	return b.String()
}
