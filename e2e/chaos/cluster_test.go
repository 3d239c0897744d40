package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// bins are the binaries under test, built once per test binary.
type bins struct {
	dir       string
	hyperfunc string
	double    string
}

var (
	buildOnce sync.Once
	built     *bins
	buildErr  error
)

func buildBins(t testing.TB) *bins {
	t.Helper()
	buildOnce.Do(func() { built, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("building the binaries: %v", buildErr)
	}
	return built
}

func build() (*bins, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir, err := os.MkdirTemp("", "hyperfunc-chaos-bin-")
	if err != nil {
		return nil, err
	}
	// hf-shim sits next to hyperfunc: the agent serves it to Nomad clients.
	cmd := exec.Command(goBin, "build", "-o", dir+string(filepath.Separator),
		"./cmd/hyperfunc", "./cmd/hf-shim", "./nomadjob/nomadtest/cmd/nomad-double")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return &bins{dir: dir, hyperfunc: filepath.Join(dir, "hyperfunc"), double: filepath.Join(dir, "nomad-double")}, nil
}

// ---- the Nomad double ----

type double struct {
	// starts counts the runs on a real Nomad (-chaos.nomad=real); nil on
	// the double, which counts them itself.
	starts  *startCounter
	cmd     *exec.Cmd
	nomad   string
	control string
	done    chan struct{}
	hc      *http.Client
}

func startDouble(t testing.TB, b *bins, logPath string) *double {
	t.Helper()
	logF, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(b.double)
	cmd.Stderr = logF
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the Nomad double: %v", err)
	}
	d := &double{cmd: cmd, done: make(chan struct{}), hc: &http.Client{Timeout: 10 * time.Second}}
	go func() { _ = cmd.Wait(); logF.Close(); close(d.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-d.done
		}
	})
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		l, _ := r.ReadString('\n')
		line <- l
		_, _ = io.Copy(logF, r)
	}()
	select {
	case l := <-line:
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "nomad="); ok {
				d.nomad = v
			}
			if v, ok := strings.CutPrefix(f, "control="); ok {
				d.control = v
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the Nomad double printed no address in 30s")
	}
	if d.nomad == "" || d.control == "" {
		t.Fatalf("the Nomad double printed no nomad=/control= address (see %s)", logPath)
	}
	return d
}

func (d *double) post(path string) error {
	if d.starts != nil {
		return fmt.Errorf("POST %s: not on a real Nomad", path)
	}
	resp, err := d.hc.Post(d.control+path, "text/plain", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: HTTP %d", path, resp.StatusCode)
	}
	return nil
}

// executions is how many times the double ran call id's task.
func (d *double) executions(id string) (int, error) {
	if d.starts != nil {
		return d.starts.get(id)
	}
	resp, err := d.hc.Get(d.control + "/executions?call=" + id)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// ---- the agents ----

type nodeState int

const (
	nodeStopped nodeState = iota
	nodeRunning
	nodePaused
)

type node struct {
	c    *cluster
	idx  int
	name string

	httpProxy, raftProxy *proxy
	logPath              string

	mu       sync.Mutex
	httpAddr string // real listen addresses (the proxies' targets)
	raftAddr string
	dataDir  string
	gen      int // data dir generation: a fresh data dir is a new server
	state    nodeState
	drained  bool // out of the public address's rotation
	cmd      *exec.Cmd
	done     chan struct{}
	client   *api.Client
}

type cluster struct {
	t      testing.TB
	bins   *bins
	dir    string
	net    *network
	double *double
	nodes  []*node
	lb     *publicLB // -public-url: the address Nomad tasks fetch the shim from
	token  string
	key    string
	hc     *http.Client
	logf   func(format string, args ...any)
	rng    *rand.Rand // guarded by rngMu
	rngMu  sync.Mutex
}

const clusterSize = 3

func newCluster(t testing.TB, b *bins, dir string, seed uint64, logf func(string, ...any)) *cluster {
	t.Helper()
	c := &cluster{
		t: t, bins: b, dir: dir, net: newNetwork(), logf: logf,
		token: "chaos-admin-" + strconv.FormatUint(seed, 16), key: "chaos-cluster-key",
		hc:  &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		rng: rand.New(rand.NewPCG(seed, 0x5eed)),
	}
	if realNomad() {
		c.double = startRealNomad(t)
	} else {
		c.double = startDouble(t, b, filepath.Join(dir, "nomad-double.log"))
	}
	lb, err := newPublicLB(c)
	if err != nil {
		t.Fatal(err)
	}
	c.lb = lb
	t.Cleanup(lb.Close)
	for i := 0; i < clusterSize; i++ {
		n := &node{c: c, idx: i, name: fmt.Sprintf("node%d", i+1), logPath: filepath.Join(dir, fmt.Sprintf("node%d.log", i+1))}
		n.httpProxy, err = c.net.newProxy(i, n.realHTTP)
		if err != nil {
			t.Fatal(err)
		}
		n.raftProxy, err = c.net.newProxy(i, n.realRaft)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.httpProxy.Close)
		t.Cleanup(n.raftProxy.Close)
		n.dataDir = filepath.Join(dir, fmt.Sprintf("%s-data-%d", n.name, n.gen))
		c.nodes = append(c.nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.signal(syscall.SIGCONT)
			n.stop(syscall.SIGKILL, 10*time.Second)
		}
	})
	for _, n := range c.nodes {
		if err := n.start(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *cluster) randIntN(n int) int {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return c.rng.IntN(n)
}

// publicLB is the servers' public address (-public-url), an HTTP load
// balancer as operators put in front of a cluster: each request goes to a
// running server in the rotation over a new connection, and a server
// leaves the rotation (drain) before it is stopped.
type publicLB struct {
	c        *cluster
	ln       net.Listener
	srv      *http.Server
	mu       sync.Mutex
	inflight map[string]int // by server address
	tr       *http.Transport
}

func newPublicLB(c *cluster) (*publicLB, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	lb := &publicLB{c: c, ln: ln, inflight: map[string]int{}, tr: &http.Transport{DisableKeepAlives: true}}
	lb.srv = &http.Server{Handler: http.HandlerFunc(lb.serve)}
	go func() { _ = lb.srv.Serve(ln) }()
	return lb, nil
}

// serve forwards a GET to a server in the rotation. A server that refuses
// the connection (started but not listening yet, or killed and not yet
// reaped) is skipped for the next one, as load balancers retry idempotent
// requests on the next upstream (nginx's proxy_next_upstream); only when
// every server in the rotation failed does it wait a moment and go round
// again. Picking at random for each retry (as this did before) sent all
// five retries of one download to the same booting server now and then:
// a 502, and the call failed at its artifact download (CI, stop 18).
func (lb *publicLB) serve(w http.ResponseWriter, r *http.Request) {
	var lastErr error
	// Generous: it only bounds a cluster with no server answering at all;
	// the double's artifact client gives up after 30 s.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && r.Context().Err() == nil {
		for _, addr := range lb.c.liveInRandomOrder() {
			resp, err := lb.roundTrip(r, addr)
			if err != nil {
				lastErr = err
				continue
			}
			for k, vs := range resp.Header {
				w.Header()[k] = vs
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
			resp.Body.Close()
			lb.mu.Lock()
			lb.inflight[addr]--
			lb.mu.Unlock()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	http.Error(w, fmt.Sprintf("no server in the rotation answered: %v", lastErr), http.StatusBadGateway)
}

// roundTrip sends r to addr over a new connection, counted in flight until
// the caller has copied the body (it decrements on success).
func (lb *publicLB) roundTrip(r *http.Request, addr string) (*http.Response, error) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+addr+r.URL.RequestURI(), nil)
	if err != nil {
		return nil, err
	}
	lb.mu.Lock()
	lb.inflight[addr]++
	lb.mu.Unlock()
	resp, err := lb.tr.RoundTrip(out)
	if err != nil {
		lb.mu.Lock()
		lb.inflight[addr]--
		lb.mu.Unlock()
		return nil, err
	}
	return resp, nil
}

func (lb *publicLB) Addr() string { return lb.ln.Addr().String() }
func (lb *publicLB) Close()       { _ = lb.srv.Close() }

func (lb *publicLB) busy(addr string) int {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.inflight[addr]
}

// liveInRandomOrder is the public address's rotation: the running,
// unpaused, undrained nodes, shuffled, as a load balancer with health
// checks would try them.
func (c *cluster) liveInRandomOrder() []string {
	var live []string
	for _, n := range c.nodes {
		n.mu.Lock()
		if n.state == nodeRunning && !n.drained {
			live = append(live, n.httpAddr)
		}
		n.mu.Unlock()
	}
	rand.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	return live
}

func (n *node) realHTTP() string { n.mu.Lock(); defer n.mu.Unlock(); return n.httpAddr }
func (n *node) realRaft() string { n.mu.Lock(); defer n.mu.Unlock(); return n.raftAddr }

// Client talks to the node's real HTTP address, as a client next to it
// would: a partitioned node still takes requests.
func (n *node) Client() *api.Client {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.client
}

func (n *node) State() nodeState { n.mu.Lock(); defer n.mu.Unlock(); return n.state }

func (n *node) args() []string {
	var join []string
	for _, o := range n.c.nodes {
		if o != n {
			join = append(join, o.httpProxy.Addr())
		}
	}
	return append([]string{"agent",
		"-data-dir", n.dataDir,
		"-http-addr", n.httpAddr, "-raft-addr", n.raftAddr,
		"-advertise-http", n.httpProxy.Addr(), "-advertise-raft", n.raftProxy.Addr(),
		"-public-url", "http://" + n.c.lb.Addr(),
		"-bootstrap-expect", strconv.Itoa(clusterSize), "-join", strings.Join(join, ","),
		"-nomad-addr", n.c.double.nomad,
		"-acl", "-bootstrap-token", n.c.token, "-cluster-key", n.c.key,
		"-log-level", "info",
	}, shimVolumeArgs()...)
}

// errPortInUse: the agent could not bind a port picked for it.
var errPortInUse = errors.New("port in use")

// start runs the agent on its data dir and waits until it listens (it
// logs "agent started" once its HTTP and Raft listeners are bound) or
// exits. Each start picks new real ports below the kernel's ephemeral
// range (harness.FreeAddr); the proxies the node advertises stay, so its
// peers and its Raft identity do not notice. Ports picked with :0 (as
// before) lay in the ephemeral range, where the proxies' own :0 listeners
// and every outgoing connection take theirs: in CI (2026-11-30, 21:52) a node's Raft
// port was handed to its HTTP proxy before the node bound it, the node
// exited, and the cluster never formed. A port another test process takes
// between the pick and the bind is picked anew.
func (n *node) start() error {
	for attempt := 1; ; attempt++ {
		off, done, err := n.launch()
		if err != nil {
			return err
		}
		err = n.waitListening(off, done)
		if !errors.Is(err, errPortInUse) || attempt == 5 {
			return err
		}
		n.c.logf("%v; starting it again on other ports", err)
	}
}

// launch starts the agent process on new ports. It returns the log's size
// before this start's lines and a channel closed when the process ends.
func (n *node) launch() (int64, <-chan struct{}, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != nodeStopped {
		return 0, nil, fmt.Errorf("%s: start while it runs", n.name)
	}
	httpAddr, err := harness.FreeAddr()
	if err != nil {
		return 0, nil, err
	}
	raftAddr, err := harness.FreeAddr()
	if err != nil {
		return 0, nil, err
	}
	n.httpAddr, n.raftAddr = httpAddr, raftAddr
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, nil, err
	}
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return 0, nil, err
	}
	args := n.args()
	fmt.Fprintf(f, "=== chaos: %s %s\n", n.c.bins.hyperfunc, strings.Join(args, " "))
	cmd := exec.Command(n.c.bins.hyperfunc, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return 0, nil, fmt.Errorf("starting %s: %w", n.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		n.mu.Lock()
		if n.cmd == cmd {
			n.state = nodeStopped
		}
		n.mu.Unlock()
		n.c.net.setPID(n.idx, 0)
		close(done)
	}()
	n.cmd, n.done, n.state, n.drained = cmd, done, nodeRunning, false
	n.c.net.setPID(n.idx, cmd.Process.Pid)
	n.client, _ = api.NewClient(&api.Config{Address: n.httpAddr, Token: n.c.token, HTTPClient: n.c.hc})
	return off, done, nil
}

// waitListening waits until this start's log lines (from off) say the
// agent started, or the process ended. The deadline only catches a hang.
func (n *node) waitListening(off int64, done <-chan struct{}) error {
	const timeout = 3 * time.Minute
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(n.logSince(off), "agent started") {
			return nil
		}
		select {
		case <-done:
			if strings.Contains(n.logSince(off), "address already in use") {
				return fmt.Errorf("%s exited at start: %w", n.name, errPortInUse)
			}
			return fmt.Errorf("%s exited at start:\n%s", n.name, n.logTail(20))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s neither started nor exited within %s:\n%s", n.name, timeout, n.logTail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logSince is the node's log from byte off on.
func (n *node) logSince(off int64) string {
	b, _ := os.ReadFile(n.logPath)
	if int64(len(b)) < off {
		return ""
	}
	return string(b[off:])
}

func (n *node) signal(sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.state == nodeStopped {
		return
	}
	_ = syscall.Kill(n.cmd.Process.Pid, sig)
	switch sig {
	case syscall.SIGSTOP:
		n.state = nodePaused
	case syscall.SIGCONT:
		n.state, n.drained = nodeRunning, false
	}
}

// drain takes the node out of the public address's rotation and waits (a
// few seconds at most) for the downloads in flight through it to end, as a
// load balancer does before a server is stopped. SIGCONT or a start puts
// it back.
func (n *node) drain() {
	n.mu.Lock()
	n.drained = true
	addr := n.httpAddr
	n.mu.Unlock()
	_ = poll(3*time.Second, 20*time.Millisecond, func() error {
		if k := n.c.lb.busy(addr); k > 0 {
			return fmt.Errorf("%d downloads in flight", k)
		}
		return nil
	})
}

// stop sends sig and waits for the exit; after timeout it kills. It
// reports whether the process ended of sig (not of the fallback kill).
func (n *node) stop(sig syscall.Signal, timeout time.Duration) bool {
	n.mu.Lock()
	done, running := n.done, n.state != nodeStopped && n.cmd != nil
	n.mu.Unlock()
	if !running {
		return true
	}
	n.signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(timeout):
	}
	n.signal(syscall.SIGCONT)
	n.signal(syscall.SIGKILL)
	<-done
	return false
}

// freshDataDir gives the node an empty data dir: a new server ID.
func (n *node) freshDataDir() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gen++
	n.dataDir = filepath.Join(n.c.dir, fmt.Sprintf("%s-data-%d", n.name, n.gen))
}

// nodeID is the Raft server ID the agent keeps in its data dir.
func (n *node) nodeID() string {
	n.mu.Lock()
	dir := n.dataDir
	n.mu.Unlock()
	b, _ := os.ReadFile(filepath.Join(dir, "node-id"))
	return strings.TrimSpace(string(b))
}

func (n *node) logTail(lines int) string {
	b, _ := os.ReadFile(n.logPath)
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return fmt.Sprintf("--- %s (%s), last %d lines ---\n%s\n", n.name, n.logPath, len(ls), strings.Join(ls, "\n"))
}

var requeuedRE = regexp.MustCompile(`reconciled started calls: calls=\d+ requeued=(\d+)`)

// requeuedAfterFailover sums, over every agent's log, the calls that a new
// leader's reconcile found never started and queued again.
func (c *cluster) requeuedAfterFailover() int {
	total := 0
	for _, n := range c.nodes {
		b, _ := os.ReadFile(n.logPath)
		for _, m := range requeuedRE.FindAllSubmatch(b, -1) {
			k, _ := strconv.Atoi(string(m[1]))
			total += k
		}
	}
	return total
}

// get reads a JSON endpoint of the node with the admin token.
func (c *cluster) get(ctx context.Context, n *node, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.realHTTP()+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s on %s: HTTP %d: %s", path, n.name, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// leader is the node every running node names as leader, or nil.
func (c *cluster) leader(ctx context.Context) (*node, error) {
	var addr string
	for _, n := range c.nodes {
		if n.State() != nodeRunning {
			return nil, fmt.Errorf("%s is not running", n.name)
		}
		var a string
		if err := c.get(ctx, n, "/v1/status/leader", &a); err != nil {
			return nil, err
		}
		if a == "" {
			return nil, fmt.Errorf("%s knows no leader", n.name)
		}
		if addr != "" && a != addr {
			return nil, fmt.Errorf("nodes disagree on the leader: %s and %s", addr, a)
		}
		addr = a
	}
	for _, n := range c.nodes {
		if n.raftProxy.Addr() == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("leader %s is none of the nodes' advertised Raft addresses", addr)
}

// stable checks that all three nodes run, agree on a leader, and that the
// leader's Raft configuration holds exactly the three current servers as
// voters.
func (c *cluster) stable(ctx context.Context) error {
	l, err := c.leader(ctx)
	if err != nil {
		return err
	}
	var cfg []*api.RaftServer
	if err := c.get(ctx, l, "/v1/operator/raft/configuration", &cfg); err != nil {
		return err
	}
	want := map[string]string{}
	for _, n := range c.nodes {
		want[n.nodeID()] = n.raftProxy.Addr()
	}
	voters := 0
	for _, s := range cfg {
		if !s.Voter {
			continue
		}
		voters++
		if want[s.ID] != s.Address {
			return fmt.Errorf("voter %s at %s is not a current server", s.ID, s.Address)
		}
	}
	if voters != clusterSize {
		return fmt.Errorf("%d voters, want %d", voters, clusterSize)
	}
	return nil
}

// waitStable polls stable until it holds or timeout passes.
func (c *cluster) waitStable(timeout time.Duration) error {
	return poll(timeout, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return c.stable(ctx)
	})
}

// poll runs cond every interval until it returns nil; after timeout it
// returns the last error.
func poll(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}

var errStopped = errors.New("stopped")
