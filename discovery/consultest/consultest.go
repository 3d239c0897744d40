// Package consultest is a fake Consul agent and catalog for tests. It speaks
// consul/api's wire format for exactly the calls package discovery makes:
//
//	PUT /v1/agent/service/register        AgentServiceRegistration JSON
//	PUT /v1/agent/service/deregister/<id>
//	GET /v1/catalog/service/<name>        []CatalogService JSON, with blocking
//	                                      queries (?index=&wait=)
//
// Every registered service lands in the catalog at once on one node. Faults
// can be injected: 500 answers (FailNext) and an ACL token requirement
// (RequireToken, 403 "ACL not found" otherwise).
//
// The JSON types are declared here rather than borrowed from consul/api, so a
// drift in the client's encoding shows up as a test failure.
package consultest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Node is the name and address of the single fake agent's node.
const (
	Node        = "consul-test-node"
	NodeAddress = "127.0.0.1"
	maxWait     = 10 * time.Minute // Consul's cap on ?wait=
	defaultWait = 5 * time.Minute  // Consul's default when only ?index= is given
)

// Registration is the body of PUT /v1/agent/service/register (the fields
// discovery sends; keys as consul/api's AgentServiceRegistration).
type Registration struct {
	ID      string            `json:"ID"`
	Name    string            `json:"Name"`
	Tags    []string          `json:"Tags"`
	Address string            `json:"Address"`
	Port    int               `json:"Port"`
	Meta    map[string]string `json:"Meta"`
	Check   *Check            `json:"Check"`
}

// Check is a service check as consul/api's AgentServiceCheck encodes it.
type Check struct {
	Name                           string `json:"Name"`
	HTTP                           string `json:"HTTP"`
	Method                         string `json:"Method"`
	Interval                       string `json:"Interval"`
	Timeout                        string `json:"Timeout"`
	DeregisterCriticalServiceAfter string `json:"DeregisterCriticalServiceAfter"`
}

// CatalogService is one element of GET /v1/catalog/service/<name>.
type CatalogService struct {
	Node           string            `json:"Node"`
	Address        string            `json:"Address"`
	Datacenter     string            `json:"Datacenter"`
	ServiceID      string            `json:"ServiceID"`
	ServiceName    string            `json:"ServiceName"`
	ServiceAddress string            `json:"ServiceAddress"`
	ServicePort    int               `json:"ServicePort"`
	ServiceTags    []string          `json:"ServiceTags"`
	ServiceMeta    map[string]string `json:"ServiceMeta"`
	CreateIndex    uint64            `json:"CreateIndex"`
	ModifyIndex    uint64            `json:"ModifyIndex"`
}

// Server is the fake. Create it with New.
type Server struct {
	srv       *httptest.Server
	closing   chan struct{} // closed by Close to release blocked queries
	closeOnce sync.Once

	mu       sync.Mutex
	index    uint64                    // raft index; bumped on every write
	changed  chan struct{}             // closed and replaced on every write
	regs     map[string]Registration   // agent services by ID
	catalog  map[string]CatalogService // catalog entries by service ID
	token    string                    // required token, "" for none
	failNext int                       // answer this many more requests with 500
	failed   int                       // 500s answered so far
}

// New starts a fake Consul and stops it when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		index:   1,
		changed: make(chan struct{}),
		closing: make(chan struct{}),
		regs:    map[string]Registration{},
		catalog: map[string]CatalogService{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/agent/service/register", s.register)
	mux.HandleFunc("PUT /v1/agent/service/deregister/{id}", s.deregister)
	mux.HandleFunc("GET /v1/catalog/service/{name}", s.catalogService)
	s.srv = httptest.NewServer(s.faults(mux))
	t.Cleanup(s.Close)
	return s
}

// Addr is the agent address, for ConsulConfig.Address or CONSUL_HTTP_ADDR.
func (s *Server) Addr() string { return s.srv.URL }

// Close releases blocked queries and stops the server.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.srv.Close()
}

// RequireToken makes every request without X-Consul-Token: token fail with
// 403 "ACL not found", as Consul does for an unknown token.
func (s *Server) RequireToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// FailNext makes the next n requests fail with 500 "No cluster leader".
func (s *Server) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = n
}

// Failed reports how many injected 500s have been answered.
func (s *Server) Failed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Registration returns the agent registration with the given service ID.
func (s *Server) Registration(id string) (Registration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.regs[id]
	return r, ok
}

// AddCatalogEntry puts a raw entry in the catalog, as if another agent had
// registered it. Node and Address default to the fake's own.
func (s *Server) AddCatalogEntry(e CatalogService) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Node == "" {
		e.Node, e.Address = Node, NodeAddress
	}
	s.bumpLocked()
	e.CreateIndex, e.ModifyIndex = s.index, s.index
	s.catalog[e.ServiceID] = e
}

// faults applies the injected failures before any handler runs.
func (s *Server) faults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		fail := s.failNext > 0
		if fail {
			s.failNext--
			s.failed++
		}
		denied := s.token != "" && requestToken(r) != s.token
		s.mu.Unlock()
		switch {
		case fail:
			http.Error(w, "No cluster leader", http.StatusInternalServerError)
		case denied:
			http.Error(w, "ACL not found", http.StatusForbidden)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func requestToken(r *http.Request) string {
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return t
	}
	return r.URL.Query().Get("token")
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var reg Registration
	if err := json.NewDecoder(r.Body).Decode(&reg); err != nil {
		http.Error(w, "Request decode failed: "+err.Error(), http.StatusBadRequest)
		return
	}
	if reg.Name == "" {
		http.Error(w, "Missing service name", http.StatusBadRequest)
		return
	}
	if reg.ID == "" {
		reg.ID = reg.Name
	}
	if c := reg.Check; c != nil && c.HTTP != "" {
		if d, err := time.ParseDuration(c.Interval); err != nil || d <= 0 {
			http.Error(w, "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks", http.StatusBadRequest)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bumpLocked()
	e := CatalogService{
		Node: Node, Address: NodeAddress, Datacenter: "dc1",
		ServiceID: reg.ID, ServiceName: reg.Name, ServiceAddress: reg.Address, ServicePort: reg.Port,
		ServiceTags: reg.Tags, ServiceMeta: reg.Meta,
		CreateIndex: s.index, ModifyIndex: s.index,
	}
	if prev, ok := s.catalog[reg.ID]; ok {
		e.CreateIndex = prev.CreateIndex
	}
	s.regs[reg.ID] = reg
	s.catalog[reg.ID] = e
}

func (s *Server) deregister(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.regs[id]; !ok {
		http.Error(w, fmt.Sprintf("Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id), http.StatusNotFound)
		return
	}
	delete(s.regs, id)
	delete(s.catalog, id)
	s.bumpLocked()
}

// catalogService answers the catalog read. With ?index= it is a blocking
// query: it waits until the index passes it, for up to ?wait=.
func (s *Server) catalogService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	var minIndex uint64
	if v := q.Get("index"); v != "" {
		var err error
		if minIndex, err = strconv.ParseUint(v, 10, 64); err != nil {
			http.Error(w, "Invalid index", http.StatusBadRequest)
			return
		}
	}
	wait := defaultWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, "Invalid wait time", http.StatusBadRequest)
			return
		}
		wait = min(d, maxWait)
	}
	if minIndex > 0 {
		s.waitPast(r, minIndex, wait)
		if r.Context().Err() != nil {
			return
		}
	}

	s.mu.Lock()
	out := []CatalogService{} // Consul answers [] for an unknown service
	for _, e := range s.catalog {
		if e.ServiceName == name {
			out = append(out, e)
		}
	}
	index := s.index
	s.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Consul-Index", strconv.FormatUint(index, 10))
	w.Header().Set("X-Consul-KnownLeader", "true")
	w.Header().Set("X-Consul-LastContact", "0")
	_ = json.NewEncoder(w).Encode(out)
}

// waitPast blocks until the index passes after, wait elapses, or the request
// or the server ends.
func (s *Server) waitPast(r *http.Request, after uint64, wait time.Duration) {
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		index, changed := s.index, s.changed
		s.mu.Unlock()
		if index > after {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			return
		case <-s.closing:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// bumpLocked advances the index and wakes blocked queries. s.mu must be held.
func (s *Server) bumpLocked() {
	s.index++
	close(s.changed)
	s.changed = make(chan struct{})
}
