package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/internal/mounts"
)

// Agent is one hyperfunc agent process.
type Agent struct {
	Name     string
	HTTPAddr string // host:port
	RaftAddr string
	DataDir  string
	LogPath  string

	t    testing.TB
	cmd  *exec.Cmd
	logF *os.File
	done chan struct{} // closed when the process exited
	err  error         // its exit status, after done
	once sync.Once
}

// AgentOptions shape an agent.
type AgentOptions struct {
	// Name labels the agent in logs and file names.
	Name string
	// Dev starts `hyperfunc agent -dev`.
	Dev bool
	// Args are further flags (e.g. -default-quota 2).
	Args []string
}

// errPortInUse: the agent could not bind a port picked for it; picking new
// ones and starting again is the cure.
var errPortInUse = errors.New("port in use")

const startTimeout = 3 * time.Minute

// StartAgent starts one agent and waits until it is healthy and leads
// itself (a -dev or single-node agent). It is killed when the test ends.
func StartAgent(t testing.TB, o AgentOptions) *Agent {
	t.Helper()
	for attempt := 1; ; attempt++ {
		a := newAgent(t, o.Name)
		a.start(t, devArgs(o))
		err := a.WaitHealthy(context.Background(), startTimeout)
		if err == nil {
			return a
		}
		a.stop(syscall.SIGKILL)
		if errors.Is(err, errPortInUse) && attempt < 5 {
			t.Logf("agent %s: %v; retrying with other ports", a.Name, err)
			continue
		}
		t.Fatalf("agent %s did not become healthy: %v\n%s", a.Name, err, a.LogTail(80))
	}
}

// LaunchAgent starts one agent process and returns at once, without
// waiting for it to be ready: for tests of what a user meets who starts an
// agent and uses it straight away. It is killed when the test ends.
func LaunchAgent(t testing.TB, o AgentOptions) *Agent {
	t.Helper()
	a := newAgent(t, o.Name)
	a.start(t, devArgs(o))
	return a
}

// Log is the agent's log so far.
func (a *Agent) Log() string {
	b, _ := os.ReadFile(a.LogPath)
	return string(b)
}

// StartCluster starts n agents with -bootstrap-expect n, each joining the
// others, and waits until every one of them knows the leader.
func StartCluster(t testing.TB, n int, args []string) []*Agent {
	t.Helper()
	for attempt := 1; ; attempt++ {
		agents := make([]*Agent, n)
		for i := range agents {
			agents[i] = newAgent(t, fmt.Sprintf("node%d", i+1))
		}
		for i, a := range agents {
			var join []string
			for j, b := range agents {
				if j != i {
					join = append(join, b.HTTPAddr)
				}
			}
			a.start(t, append([]string{
				"-bootstrap-expect", strconv.Itoa(n), "-join", strings.Join(join, ","),
				"-data-dir", a.DataDir,
			}, args...))
		}
		var errs []error
		for _, a := range agents {
			if err := a.WaitHealthy(context.Background(), startTimeout); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", a.Name, err))
			}
		}
		if len(errs) == 0 {
			// Health only says a node knows the leader's Raft address; a
			// follower forwards once the leader's member record (its HTTP
			// address) has reached it. Wait for a forwarded read to work.
			for _, a := range agents {
				if err := a.WaitForwarding(context.Background(), startTimeout); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", a.Name, err))
				}
			}
		}
		if len(errs) == 0 {
			return agents
		}
		for _, a := range agents {
			a.stop(syscall.SIGKILL)
		}
		err := errors.Join(errs...)
		if errors.Is(err, errPortInUse) && attempt < 5 {
			t.Logf("cluster: %v; retrying with other ports", err)
			continue
		}
		var tails strings.Builder
		for _, a := range agents {
			tails.WriteString(a.LogTail(60))
		}
		t.Fatalf("cluster did not become healthy: %v\n%s", err, tails.String())
	}
}

func newAgent(t testing.TB, name string) *Agent {
	t.Helper()
	if name == "" {
		name = "agent"
	}
	httpAddr, raftAddr, dataDir := freeAddr(t), freeAddr(t), t.TempDir()
	// Cleanups run last-in first-out: this one, before TempDir's removal,
	// detaches the out/ tmpfs of calls the agent never released.
	t.Cleanup(func() { mounts.UnmountUnder(dataDir) })
	safe := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	a := &Agent{
		Name: name, HTTPAddr: httpAddr, RaftAddr: raftAddr, DataDir: dataDir,
		LogPath: filepath.Join(LogDir(t), fmt.Sprintf("%s-%s-%s.log", safe, name, strings.ReplaceAll(httpAddr, ":", "_"))),
		t:       t,
	}
	return a
}

func (a *Agent) start(t testing.TB, extra []string) {
	t.Helper()
	b := Build(t)
	// Debug: the log then tells what became of each call (queued,
	// starting, running, ended), so a stall can be read from it.
	args := []string{"agent", "-http-addr", a.HTTPAddr, "-raft-addr", a.RaftAddr, "-log-level", "debug"}
	hasDataDir := false
	for _, x := range extra {
		if x == "-data-dir" {
			hasDataDir = true
		}
	}
	if !hasDataDir {
		args = append(args, "-data-dir", a.DataDir)
	}
	args = append(args, extra...)
	f, err := os.OpenFile(a.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "=== harness: %s %s\n", b.Hyperfunc, strings.Join(args, " "))
	cmd := exec.Command(b.Hyperfunc, args...)
	cmd.Env = agentEnv()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting agent %s: %v", a.Name, err)
	}
	a.cmd, a.logF, a.done, a.once = cmd, f, make(chan struct{}), sync.Once{}
	go func() {
		a.err = cmd.Wait()
		f.Close()
		close(a.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent %s (%s) log, %s:\n%s", a.Name, a.HTTPAddr, a.LogPath, a.LogTail(60))
		}
		a.stop(syscall.SIGKILL)
	})
}

// agentEnv is this process's environment without the NOMAD_* variables:
// `make test` exports NOMAD_ADDR for the real-Nomad suites, and an agent
// reads it as -nomad-addr. Agents run on Nomad only when a test passes
// -nomad-addr itself.
func agentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOMAD_") {
			env = append(env, kv)
		}
	}
	return env
}

// Restart starts a stopped agent again with the same addresses, data dir
// and the given flags.
func (a *Agent) Restart(t testing.TB, args []string) {
	t.Helper()
	if !a.Exited() {
		t.Fatalf("agent %s still runs", a.Name)
	}
	a.start(t, args)
}

// devArgs are the flags of a single agent.
func devArgs(o AgentOptions) []string {
	if o.Dev {
		return append([]string{"-dev"}, o.Args...)
	}
	return o.Args
}

// URL is the agent's HTTP base URL.
func (a *Agent) URL() string { return "http://" + a.HTTPAddr }

// Client is an API client of this agent.
func (a *Agent) Client() *api.Client { return a.ClientWithToken("") }

// ClientWithToken is an API client of this agent acting with a token.
func (a *Agent) ClientWithToken(token string) *api.Client {
	c, err := api.NewClient(&api.Config{Address: a.URL(), Token: token})
	if err != nil {
		panic(err) // only a malformed address fails, and URL() is well formed
	}
	return c
}

func (a *Agent) cliEnv() []string {
	env := []string{"HYPER_ADDR=" + a.URL(), "HOME=" + a.DataDir}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HYPER_ADDR", "HYPER_TOKEN", "HOME":
			continue
		case "PATH":
			kv = "PATH=" + bins.Dir + string(os.PathListSeparator) + kv[len("PATH="):]
		}
		env = append(env, kv)
	}
	return env
}

// Exited reports whether the process has ended.
func (a *Agent) Exited() bool {
	if a.done == nil {
		return true
	}
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// Kill ends the agent with SIGKILL and waits for it.
func (a *Agent) Kill() { a.stop(syscall.SIGKILL) }

// Term ends the agent with SIGTERM (it leaves the cluster) and waits for it.
func (a *Agent) Term() { a.stop(syscall.SIGTERM) }

func (a *Agent) stop(sig syscall.Signal) {
	if a.cmd == nil || a.Exited() {
		return
	}
	_ = a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// Health reads /v1/agent/health.
func (a *Agent) Health(ctx context.Context) (*api.Health, error) {
	// Well above the 3 s the agent gives its executor's health check (a
	// busy dockerd's ping): at 2 s a slow but healthy answer was never
	// seen, and WaitHealthy or a leader search could poll until it gave up.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL()+"/v1/agent/health", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var h api.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return nil, fmt.Errorf("health answer (HTTP %d): %w", resp.StatusCode, err)
	}
	return &h, nil
}

// WaitHealthy polls /v1/agent/health until the agent answers ok with a
// known leader, or fails early when the process exits. The agent says ok
// only when it is ready: leader set up, ACL bootstrap done (the bootstrap
// token file written), executor answering.
func (a *Agent) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	last := "no answer yet"
	err := Poll(ctx, timeout, func() (bool, string) {
		if a.Exited() {
			return true, ""
		}
		h, err := a.Health(ctx)
		if err != nil {
			last = err.Error()
			return false, last
		}
		last = fmt.Sprintf("health %+v", *h)
		return h.OK && h.Leader != "", last
	})
	if a.Exited() {
		if a.logContains("address already in use") {
			return fmt.Errorf("%w: agent exited (%v)", errPortInUse, a.err)
		}
		return fmt.Errorf("agent exited: %v", a.err)
	}
	if err != nil {
		return fmt.Errorf("%w (last: %s)", err, last)
	}
	return nil
}

// WaitForwarding polls a consistent read (GET /v1/functions, answered by
// the leader, forwarded by a follower) until it succeeds.
func (a *Agent) WaitForwarding(ctx context.Context, timeout time.Duration) error {
	return Poll(ctx, timeout, func() (bool, string) {
		r, err := DoErr(ctx, http.MethodGet, a.URL()+"/v1/functions", nil)
		if err != nil {
			return false, err.Error()
		}
		return r.Code == http.StatusOK, fmt.Sprintf("GET /v1/functions: HTTP %d %s", r.Code, r.Body)
	})
}

func (a *Agent) logContains(s string) bool {
	b, err := os.ReadFile(a.LogPath)
	return err == nil && strings.Contains(string(b), s)
}

// LogTail is the last n lines of the agent's log.
func (a *Agent) LogTail(n int) string {
	f, err := os.Open(a.LogPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return fmt.Sprintf("--- %s (%s), last %d lines of %s\n%s\n", a.Name, a.HTTPAddr, len(lines), a.LogPath, strings.Join(lines, "\n"))
}

var (
	portsMu sync.Mutex
	used    = map[int]bool{}
)

// freeAddr is FreeAddr for a test's own goroutine: it fails the test when
// no port is free.
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// FreeAddr picks a loopback address ("127.0.0.1:port") whose port is free
// now and that no earlier FreeAddr of this process returned. It prefers
// ports below the kernel's ephemeral range (ip_local_port_range), which
// neither outgoing connections nor :0 listeners ever take, so the port
// stays free until an agent binds it unless another test process picks the
// same one: callers start again on new ports when the agent's log says
// "address already in use". Errors: no free port in 1,000 tries.
func FreeAddr() (string, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	lo, hi := 20000, ephemeralLow()
	if hi-lo < 1000 {
		lo, hi = 0, 0
	}
	for range 1000 {
		p := 0
		if hi > 0 {
			p = lo + rand.IntN(hi-lo)
			if used[p] {
				continue
			}
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		p = l.Addr().(*net.TCPAddr).Port
		l.Close()
		if used[p] {
			continue
		}
		used[p] = true
		return l.Addr().String(), nil
	}
	return "", errors.New("no free loopback port found in 1,000 tries")
}

func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}
