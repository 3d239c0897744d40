package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/fsm"
	"github.com/hyperfunc/hyperfunc/internal/mounts"
	"github.com/hyperfunc/hyperfunc/nomadjob"
	"github.com/hyperfunc/hyperfunc/server"
)

type agentFlags struct {
	dev             bool
	dataDir         string
	httpAddr        string
	raftAddr        string
	advertiseHTTP   string
	advertiseRaft   string
	publicURL       string
	bootstrapExpect int
	join            string
	consulAddr      string
	consulToken     string
	nomadAddr       string
	nomadRuntime    string
	nomadDCs        string
	nomadShimVolume string
	nomadNoSeal     bool
	nomadPurgeDelay time.Duration
	acl             bool
	bootstrapToken  string
	clusterKey      string
	defaultQuota    int
	maxQueued       int
	maxQueuedBytes  int64
	maxFunctions    int
	maxStdin        int64
	maxStdout       int64
	outputCache     int64
	logCache        int64
	shimPath        string
	shimArchive     []byte // built from shimPath for the Nomad executor
	logLevel        string
	memoryLimit     string
	// tempDataDir: -dev made the data dir itself, so it removes it on exit.
	// A dir the user named is never removed.
	tempDataDir bool
	// noACLOnNetwork accepts an HTTP API without ACLs on a non-loopback
	// address.
	noACLOnNetwork bool
	logJSON        bool
	startTimeout   time.Duration
	warmUserCap    int
	warmAgentCap   int
	warmIdleTTL    time.Duration
	warmAdaptive   bool
}

func parseAgentFlags(args []string, stderr io.Writer) (*agentFlags, error) {
	f := &agentFlags{}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&f.dev, "dev", false, "single node, data in a temporary dir, ACLs off unless -acl, calls on the local Docker engine")
	fs.StringVar(&f.dataDir, "data-dir", "", "where Raft keeps its log and snapshots")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:4680", "HTTP API listen address")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:4681", "Raft listen address")
	fs.StringVar(&f.advertiseHTTP, "advertise-http", "", "HTTP address other servers and Nomad clients use (default: -http-addr)")
	fs.StringVar(&f.advertiseRaft, "advertise-raft", "", "Raft address other servers use (default: -raft-addr)")
	fs.StringVar(&f.publicURL, "public-url", "", "base URL of function addresses (default: http://<advertise-http>)")
	fs.IntVar(&f.bootstrapExpect, "bootstrap-expect", 1, "servers to wait for before bootstrapping a new cluster")
	fs.StringVar(&f.join, "join", "", "comma-separated HTTP addresses of other servers")
	fs.StringVar(&f.consulAddr, "consul-addr", "", "Consul agent address: register and discover servers through its catalog")
	fs.StringVar(&f.consulToken, "consul-token", "", "Consul ACL token (default: CONSUL_HTTP_TOKEN)")
	fs.StringVar(&f.nomadAddr, "nomad-addr", os.Getenv("NOMAD_ADDR"), "run calls as Nomad dispatched jobs (default: NOMAD_ADDR; empty: local Docker)")
	fs.StringVar(&f.nomadRuntime, "nomad-runtime", "runsc", "docker runtime of function jobs on Nomad")
	fs.StringVar(&f.nomadDCs, "nomad-datacenters", "dc1", "comma-separated datacenters of function jobs")
	fs.StringVar(&f.nomadShimVolume, "nomad-shim-volume", "", "Nomad host volume on the clients holding hf-shim, mounted instead of downloading the shim per call (default: the shim artifact)")
	fs.DurationVar(&f.nomadPurgeDelay, "nomad-purge-delay", nomadjob.DefaultPurgeDelay, "how long a call's dead child job stays in Nomad after its end is recorded, so that its idempotency token answers a dispatch a deposed leader still had in flight (0: purge at once)")
	fs.BoolVar(&f.nomadNoSeal, "nomad-no-seal", false, "run function tasks wholly as their user, without the shim's setuid, setgid and kill capabilities (for clients whose docker allow_caps lacks them); warm calls then wait for their allocation's end")
	fs.BoolVar(&f.acl, "acl", false, "require tokens (a new cluster creates an admin token)")
	fs.StringVar(&f.bootstrapToken, "bootstrap-token", os.Getenv("HYPERFUNC_BOOTSTRAP_TOKEN"), "secret of the first admin token (generated into <data-dir>/bootstrap-token when empty)")
	fs.StringVar(&f.clusterKey, "cluster-key", os.Getenv("HYPERFUNC_CLUSTER_KEY"), "secret every server of the cluster shares (>= 16 bytes): Raft's mutual TLS and server-to-server requests (a standalone server makes its own in <data-dir>/cluster-key)")
	fs.IntVar(&f.defaultQuota, "default-quota", 10, "calls a user may run at once unless set per user")
	fs.IntVar(&f.maxQueued, "max-queued", 10000, "queued calls per user before new calls get 429")
	fs.Int64Var(&f.maxQueuedBytes, "max-queued-bytes", 64<<20, "stdin bytes a user's unfinished calls may hold before new calls get 429")
	fs.IntVar(&f.maxFunctions, "max-functions", 100, "functions per user before a create gets 429")
	fs.Int64Var(&f.maxStdin, "max-stdin", 1<<20, "stdin limit per call in bytes")
	fs.Int64Var(&f.maxStdout, "max-stdout", 1<<20, "stdout limit per call in bytes")
	fs.Int64Var(&f.outputCache, "output-cache", 50<<20, "output cache per function in bytes (same on every server)")
	fs.Int64Var(&f.logCache, "log-cache", 50<<20, "log cache per function in bytes (same on every server)")
	fs.StringVar(&f.shimPath, "shim-path", "", "the hf-shim binary: the entrypoint of every function container (default: next to this binary)")
	fs.StringVar(&f.logLevel, "log-level", "info", "trace, debug (each call's transitions), info, warn or error")
	fs.BoolVar(&f.noACLOnNetwork, "insecure-no-acl", false, "serve the HTTP API without ACLs on a non-loopback -http-addr (anyone who reaches it is an admin)")
	fs.BoolVar(&f.logJSON, "log-json", false, "log one JSON object per line (for log shippers) instead of text")
	fs.StringVar(&f.memoryLimit, "memory-limit", "auto", "soft limit of the agent's Go heap (GOMEMLIMIT): a size like 4GiB, auto (half the cgroup's or the machine's memory) or off")
	fs.DurationVar(&f.startTimeout, "start-timeout", 2*time.Minute, "how long the executor may take to start one call before it goes back to the queue")
	fs.IntVar(&f.warmUserCap, "warm-user-cap", server.DefaultWarmUserCap, "pre-started sandboxes (func --warm) one user's functions may hold in all; 0: none")
	fs.IntVar(&f.warmAgentCap, "warm-agent-cap", server.DefaultWarmAgentCap, "pre-started sandboxes this agent keeps in all, when it leads; 0: none")
	fs.DurationVar(&f.warmIdleTTL, "warm-idle-ttl", server.DefaultWarmIdleTTL, "with -warm-adaptive: how long after its last call a function keeps its one warm sandbox")
	fs.BoolVar(&f.warmAdaptive, "warm-adaptive", false, "keep one pre-started sandbox for every function called within -warm-idle-ttl")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if f.dev && f.dataDir == "" {
		dir, err := os.MkdirTemp("", "hyperfunc-dev-")
		if err != nil {
			return nil, err
		}
		f.dataDir, f.tempDataDir = dir, true
	}
	if f.warmUserCap < 0 || f.warmAgentCap < 0 || f.warmIdleTTL <= 0 {
		return nil, fmt.Errorf("-warm-user-cap and -warm-agent-cap must be 0 or more, -warm-idle-ttl positive")
	}
	if f.dataDir == "" {
		return nil, fmt.Errorf("-data-dir is required (or -dev)")
	}
	if f.dev {
		f.bootstrapExpect = 1
	}
	if !f.acl {
		// Without ACLs anyone who reaches the HTTP API is an admin who may run
		// containers: only on loopback, unless the operator says otherwise.
		if !loopback(f.httpAddr) && !f.noACLOnNetwork {
			return nil, fmt.Errorf("-http-addr %s is not a loopback address and ACLs are off: anyone who reaches it could run containers as an admin; add -acl (or -insecure-no-acl to accept that)", f.httpAddr)
		}
	}
	if f.shimPath == "" {
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), "hf-shim"); fileExists(p) {
				f.shimPath = p
			}
		}
	}
	return f, nil
}

// loopback says whether a listen address binds only the loopback
// interface ("127.0.0.1:4680", "[::1]:4680", "localhost:4680").
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func agentCommand(args []string, stderr io.Writer) int {
	f, err := parseAgentFlags(args, stderr)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "Error:", err)
		return 2
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "hyperfunc", Level: hclog.LevelFromString(f.logLevel), Output: stderr, JSONFormat: f.logJSON})
	if limit, err := applyMemoryLimit(f.memoryLimit); err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return 2
	} else if limit > 0 {
		logger.Info("Go memory limit set", "bytes", limit)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()

	if f.clusterKey, err = resolveClusterKey(f); err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return 2
	}
	exec, closeExec, err := buildExecutor(ctx, f, logger)
	if err != nil {
		logger.Error("executor setup failed", "error", err)
		return 1
	}
	defer closeExec()

	cfg := server.Config{
		DataDir: f.dataDir, HTTPAddr: f.httpAddr, RaftAddr: f.raftAddr,
		AdvertiseHTTP: f.advertiseHTTP, AdvertiseRaft: f.advertiseRaft, PublicURL: f.publicURL,
		BootstrapExpect: f.bootstrapExpect, Join: splitList(f.join),
		ACL: f.acl, BootstrapToken: f.bootstrapToken, ClusterKey: f.clusterKey,
		DefaultQuota: f.defaultQuota, MaxQueued: f.maxQueued, MaxQueuedBytes: f.maxQueuedBytes, MaxFunctions: f.maxFunctions, MaxStdin: f.maxStdin, StdoutLimit: f.maxStdout,
		StartTimeout: f.startTimeout,
		WarmUserCap:  orNone(f.warmUserCap), WarmAgentCap: orNone(f.warmAgentCap),
		WarmIdleTTL: f.warmIdleTTL, WarmAdaptive: f.warmAdaptive,
		FSM:         fsm.Config{OutputCacheBytes: f.outputCache, LogCacheBytes: f.logCache},
		ShimArchive: f.shimArchive, Executor: exec, Logger: logger,
	}
	if f.consulAddr != "" {
		d, err := newConsulDiscovery(f.consulAddr, f.consulToken, logger)
		if err != nil {
			logger.Error("consul setup failed", "error", err)
			return 1
		}
		cfg.Discovery = d
	}
	if f.dev {
		// One server, no peers: a short election instead of Raft's
		// one-second default, so the first request finds a leader.
		cfg.RaftTuning = devRaftTimers
	}
	srv, err := server.New(cfg)
	if err != nil {
		logger.Error("agent setup failed", "error", err)
		return 1
	}
	if err := srv.Start(); err != nil {
		logger.Error("agent start failed", "error", err)
		return 1
	}
	if f.dev {
		devBanner(stderr, srv, f, exec.Name())
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	sig := <-sigs
	logger.Info("shutting down", "signal", sig)
	// SIGTERM is how schedulers stop a server: leave the cluster cleanly.
	leave := sig == syscall.SIGTERM
	if err := srv.Shutdown(leave); err != nil {
		logger.Warn("shutdown", "error", err)
	}
	if f.tempDataDir {
		// The data dir goes: so do this agent's containers (warm
		// sandboxes, calls), which no later agent could collect.
		closeExec()
		if r, ok := exec.(interface {
			RemoveContainers(context.Context) (int, error)
		}); ok {
			rmCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if n, err := r.RemoveContainers(rmCtx); err != nil {
				logger.Warn("removing the dev agent's containers", "removed", n, "error", err)
			}
			cancel()
		}
		// Detached: a call still running keeps its result dir's tmpfs.
		mounts.UnmountUnder(f.dataDir)
		os.RemoveAll(f.dataDir)
	}
	return 0
}

// devRaftTimers shorten the election of a one-server dev agent. With no
// peers there is no quorum to lose, so short timers cost nothing.
func devRaftTimers(rc *raft.Config) {
	rc.HeartbeatTimeout = 100 * time.Millisecond
	rc.ElectionTimeout = 100 * time.Millisecond
	rc.LeaderLeaseTimeout = 50 * time.Millisecond
}

// devBanner tells the dev agent's user where it listens once it is ready
// (requests sent before are held, not refused), and how to authenticate
// when -acl was given.
func devBanner(w io.Writer, srv *server.Server, f *agentFlags, executor string) {
	deadline := time.Now().Add(30 * time.Second)
	for srv.NotReady() != "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	acl := "ACLs off"
	hint := ""
	if f.acl {
		acl = "ACLs on"
		if f.bootstrapToken == "" {
			hint = fmt.Sprintf("    export HYPER_TOKEN=$(cat %s)\n", filepath.Join(f.dataDir, server.BootstrapTokenFile))
		}
	}
	state := "ready"
	if why := srv.NotReady(); why != "" {
		state = "not ready yet: " + why
	}
	fmt.Fprintf(w, "\n==> hyperfunc dev agent %s: HTTP API at http://%s (%s, executor %s, data in %s)\n%s"+
		"    Try: hyper func create --name helloworld ubuntu echo HelloWorld\n\n", state, srv.HTTPAddr(), acl, executor, f.dataDir, hint)
}

// orNone maps a cap flag to server.Config, where 0 means the default and a
// negative cap means none.
func orNone(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
