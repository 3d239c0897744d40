// Package server is a hyperfunc agent: the Raft node and cluster join, the
// HTTP API (gin) with leader forwarding and auth, and the dispatcher that
// runs calls on an Executor while this node leads. See DESIGN.md beside it.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/fsm"
)

// Config of one agent.
type Config struct {
	NodeID   string // stable ID of this server; read from or written to the data dir when empty
	DataDir  string
	HTTPAddr string // listen address of the HTTP API
	RaftAddr string // listen address of Raft
	// AdvertiseHTTP and AdvertiseRaft are the addresses peers use; default
	// the listen addresses (with a port chosen by the kernel when :0).
	AdvertiseHTTP string
	AdvertiseRaft string

	BootstrapExpect int      // servers to wait for before bootstrapping
	Join            []string // HTTP addresses of other servers
	Discovery       Discovery

	ACL            bool   // require tokens
	BootstrapToken string // secret of the first admin token (generated when empty)
	// ClusterKey is the secret every server of the cluster shares (at least
	// MinClusterKeyBytes): Raft's mutual TLS and the internal routes' token
	// are derived from it, and the cluster ID (ClusterID). Required.
	ClusterKey string

	DefaultQuota int // calls a user may run at once unless set per user
	MaxQueued    int // queued calls per user
	// MaxQueuedBytes bounds the stdin bytes a user's unfinished calls hold
	// (in memory and in the Raft log until they end): 64 MiB by default.
	MaxQueuedBytes int64
	// BodyReadTimeout bounds the reading of a request body and IdleTimeout
	// a keep-alive connection's idleness (DefaultBodyReadTimeout and
	// DefaultIdleTimeout when zero); neither bounds a handler.
	BodyReadTimeout time.Duration
	IdleTimeout     time.Duration
	// LogBytesPerSnapshot is how many bytes of Raft log are applied before
	// a snapshot compacts the log, whatever the entry count
	// (DefaultLogBytesPerSnapshot when zero).
	LogBytesPerSnapshot int64
	// MaxFunctions bounds the functions of one user (each has caches of
	// its own): 100 by default.
	MaxFunctions int
	MaxStdin     int64
	StdoutLimit  int64
	FSM          fsm.Config
	ApplyTimeout time.Duration
	// StartTimeout bounds one executor Start (default 2m); a call whose
	// Start did not answer by then goes back to the queue and is started
	// again.
	StartTimeout time.Duration
	PublicURL    string // base of function addresses; defaults to http://AdvertiseHTTP
	// ShimArchive is the hf-shim archive served to Nomad clients at
	// /v1/artifacts/hf-shim.tar.gz (its checksum is in every function job).
	ShimArchive []byte
	// Warm sandboxes, for executors that keep them (localexec): at most
	// WarmUserCap of one user's functions and WarmAgentCap in all
	// (DefaultWarm*Cap when 0, none when negative); WarmAdaptive keeps one
	// for each function called within WarmIdleTTL (DefaultWarmIdleTTL).
	// See warm.go.
	WarmUserCap  int
	WarmAgentCap int
	WarmIdleTTL  time.Duration
	WarmAdaptive bool

	// RaftSegmentBytes is the size of one Raft log segment file (raft-wal's
	// 64 MiB when 0). The log behind a snapshot is deleted a whole segment
	// at a time, so up to one segment of entries behind TrailingLogs stays
	// readable, and a follower that far behind catches up from the log
	// rather than a snapshot. Tests make it small to see snapshots sent.
	RaftSegmentBytes int

	Executor Executor
	Logger   hclog.Logger
	// RaftTuning lets tests shorten Raft's timers.
	RaftTuning func(*raft.Config)
	// announceProtocol, when set, is the Protocol this server records
	// instead of fsm.Protocol: tests stand in for an older version.
	announceProtocol *int
	// dispatchSafetyNet, when set, replaces the 2 s after which the
	// dispatcher looks at its queues again with nothing changed: tests
	// make it long to prove a change wakes it.
	dispatchSafetyNet time.Duration
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.DefaultQuota == 0 {
		c.DefaultQuota = 10
	}
	if c.MaxQueued == 0 {
		c.MaxQueued = 10000
	}
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = 64 << 20
	}
	if c.BodyReadTimeout == 0 {
		c.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.LogBytesPerSnapshot == 0 {
		c.LogBytesPerSnapshot = DefaultLogBytesPerSnapshot
	}
	if c.MaxFunctions == 0 {
		c.MaxFunctions = 100
	}
	if c.MaxStdin == 0 {
		c.MaxStdin = 1 << 20
	}
	if c.StdoutLimit == 0 {
		c.StdoutLimit = 1 << 20
	}
	if c.FSM.OutputCacheBytes == 0 {
		c.FSM = fsm.DefaultConfig()
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 10 * time.Second
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 2 * time.Minute
	}
	if c.WarmUserCap == 0 {
		c.WarmUserCap = DefaultWarmUserCap
	}
	if c.WarmAgentCap == 0 {
		c.WarmAgentCap = DefaultWarmAgentCap
	}
	if c.WarmIdleTTL <= 0 {
		c.WarmIdleTTL = DefaultWarmIdleTTL
	}
	if c.BootstrapExpect == 0 {
		c.BootstrapExpect = 1
	}
	if c.Logger == nil {
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: "hyperfunc", Level: hclog.Info})
	}
}

// Server is one running agent.
type Server struct {
	cfg     Config
	log     hclog.Logger
	fsm     *fsm.FSM
	store   *fsm.Store
	raft    *raft.Raft
	trans   *raft.NetworkTransport
	auth    *clusterAuth
	sized   *sizedFSM    // s.fsm as Raft sees it: counts applied bytes
	closer  func() error // raft stores
	dirLock *os.File     // held from New to Shutdown (datadir.go)
	exec    Executor

	httpLn  net.Listener
	httpSrv *http.Server
	self    api.Member

	metrics  *metrics
	enqueuer *enqueuer
	warm     *warmState       // the adaptive mode's last calls (warm.go)
	fwdQueue chan *enqueueReq // async calls a follower batches to the leader

	peersMu    sync.Mutex
	savedPeers []string // what savePeers wrote last

	mu         sync.Mutex
	leaderStop context.CancelFunc
	// leaderReady: this server leads and its duties are set up (barrier,
	// member record, ACL bootstrap); the dispatcher runs.
	leaderReady atomic.Bool
	leaderDone  chan struct{}

	// stopRequests ends every request's context with errShuttingDown, so
	// long polls and sync calls answer at once when the server stops.
	stopRequests context.CancelCauseFunc
	// stopJoin ends the join loop, joinDone closes when it has: a server
	// that leaves must not have a join request in flight, or the leader
	// may add it back right after removing it.
	stopJoin context.CancelFunc
	joinDone chan struct{}

	shutdownCh chan struct{}
	wg         sync.WaitGroup

	stageLane chan struct{} // chunks of large payloads in Raft (stage.go)
}

// New builds an agent and opens its state; Start runs it.
func New(cfg Config) (*Server, error) {
	cfg.Defaults()
	if cfg.Executor == nil {
		return nil, errors.New("no executor configured")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("no data dir configured")
	}
	auth, err := newClusterAuth(cfg.ClusterKey)
	if err != nil {
		return nil, err
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	// Before anything in the data dir is touched: the state file is
	// deleted and rebuilt below, and a raft.db may be moved.
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	if cfg.NodeID == "" {
		id, err := loadOrCreateNodeID(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		cfg.NodeID = id
	}
	// The state's disk half (outputs, logs, ended calls) lives beside the
	// Raft data, and is rebuilt from it at every start.
	stateDir := filepath.Join(cfg.DataDir, "state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	f, err := fsm.New(cfg.FSM, stateDir)
	if err != nil {
		return nil, err
	}
	ok = true
	s := &Server{
		cfg: cfg, log: cfg.Logger, fsm: f, store: f.Store(), exec: cfg.Executor, auth: auth,
		shutdownCh: make(chan struct{}), dirLock: lock,
	}
	s.sized = newSizedFSM(f, cfg.LogBytesPerSnapshot)
	s.warm = newWarmState()
	s.metrics = newMetrics(s)
	s.metrics.registerWarmMetrics(s.exec)
	s.enqueuer = newEnqueuer(s)
	s.fwdQueue = make(chan *enqueueReq, 4096)
	s.stageLane = make(chan struct{}, stageLanes)
	return s, nil
}

// ClusterID is this cluster's ID (see ClusterID).
func (s *Server) ClusterID() string { return s.auth.clusterID }

// Start opens the listeners, starts Raft and joins or bootstraps the cluster
// in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		s.closeUnstarted()
		return fmt.Errorf("http listen %s: %w", s.cfg.HTTPAddr, err)
	}
	s.httpLn = ln
	if s.cfg.AdvertiseHTTP == "" {
		s.cfg.AdvertiseHTTP = ln.Addr().String()
	}
	if s.cfg.PublicURL == "" {
		s.cfg.PublicURL = "http://" + s.cfg.AdvertiseHTTP
	}
	if err := s.setupRaft(); err != nil {
		ln.Close()
		s.closeUnstarted()
		return err
	}
	s.self = api.Member{ID: s.cfg.NodeID, RaftAddr: string(s.trans.LocalAddr()), HTTPAddr: s.cfg.AdvertiseHTTP, Protocol: fsm.Protocol}
	if s.cfg.announceProtocol != nil {
		s.self.Protocol = *s.cfg.announceProtocol
	}
	base, stop := context.WithCancelCause(context.Background())
	s.stopRequests = stop
	s.httpSrv = &http.Server{
		Handler: s.router(), ReadHeaderTimeout: headerReadTimeout, IdleTimeout: s.cfg.IdleTimeout,
		MaxHeaderBytes: 64 << 10,
		BaseContext:    func(net.Listener) context.Context { return base },
	}
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "error", err)
		}
	}()
	go func() { defer s.wg.Done(); s.monitorLeadership() }()
	go func() { defer s.wg.Done(); s.enqueuer.run(s.shutdownCh) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.runForwarder() }()
	s.wg.Add(1)
	jctx, stopJoin := context.WithCancel(context.Background())
	s.stopJoin, s.joinDone = stopJoin, make(chan struct{})
	go func() { defer s.wg.Done(); defer close(s.joinDone); s.joinCluster(jctx) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.runCompactor() }()
	s.log.Info("agent started", "node", s.cfg.NodeID, "http", s.cfg.AdvertiseHTTP, "raft", s.self.RaftAddr, "executor", s.exec.Name())
	return nil
}

// closeUnstarted closes what New opened when Start fails, so the data dir
// can be opened again (also in this process).
func (s *Server) closeUnstarted() {
	s.store.Close()
	s.dirLock.Close()
}

// HTTPAddr is the address the HTTP API listens on.
func (s *Server) HTTPAddr() string { return s.cfg.AdvertiseHTTP }

// RaftAddr is this server's Raft address.
func (s *Server) RaftAddr() string { return s.self.RaftAddr }

// NodeID is this server's Raft ID.
func (s *Server) NodeID() string { return s.cfg.NodeID }

// Store is the local replica of the state.
func (s *Server) Store() *fsm.Store { return s.store }

// Raft exposes the Raft node (for tests and operator endpoints).
func (s *Server) Raft() *raft.Raft { return s.raft }

// IsLeader reports whether this server leads.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// Shutdown stops the agent. With leave, it first leaves the cluster
// cleanly (handing leadership over and removing itself from the voters),
// as a SIGTERM'd server should.
func (s *Server) Shutdown(leave bool) error {
	s.savePeers() // for the restart, which may find no leader to call it
	if s.stopJoin != nil {
		s.stopJoin()
		<-s.joinDone
	}
	if leave {
		if err := s.leave(); err != nil {
			s.log.Warn("leaving the cluster failed", "error", err)
		}
	}
	if s.cfg.Discovery != nil {
		_ = s.cfg.Discovery.Deregister(context.Background())
	}
	close(s.shutdownCh)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.stopRequests(errShuttingDown)
	_ = s.httpSrv.Shutdown(ctx)
	s.stopLeading()
	err := s.raft.Shutdown().Error()
	s.wg.Wait()
	_ = s.trans.Close()
	if cerr := s.closer(); err == nil {
		err = cerr
	}
	if cerr := s.store.Close(); err == nil {
		err = cerr
	}
	s.dirLock.Close()
	return err
}
