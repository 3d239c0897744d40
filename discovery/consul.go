// Package discovery finds the other hyperfunc servers through Consul, the way
// Nomad servers do: every server registers the service "hyperfunc" with its
// local Consul agent (HTTP address, Raft address and node ID in the service
// meta, plus an HTTP health check), and reads the catalog to find its peers.
//
// The catalog is read regardless of health: a server reports unhealthy until
// a Raft leader exists, and bootstrap must see it before that.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// Service meta keys written by Register and required by Members.
const (
	MetaRaftAddr = "raft_addr"
	MetaHTTPAddr = "http_addr"
	MetaNodeID   = "node_id"
)

// Defaults for ConsulConfig.
const (
	DefaultService         = "hyperfunc"
	DefaultCheckInterval   = 10 * time.Second
	DefaultDeregisterAfter = time.Minute // Consul reaps no faster than once a minute.
	HealthPath             = "/v1/agent/health"
)

// ErrPermissionDenied is returned (wrapped) when Consul answers 403: the ACL
// token is missing, unknown ("ACL not found") or lacks permission.
var ErrPermissionDenied = errors.New("consul ACL denied the request (check the token, or CONSUL_HTTP_TOKEN)")

// Member is one hyperfunc server.
type Member struct {
	ID       string
	RaftAddr string
	HTTPAddr string
}

// ConsulConfig configures the Consul client. An empty Address or Token falls
// back to CONSUL_HTTP_ADDR / CONSUL_HTTP_TOKEN (and then to the consul/api
// defaults).
type ConsulConfig struct {
	Address         string
	Token           string
	Datacenter      string
	Service         string        // default "hyperfunc"
	CheckInterval   time.Duration // default 10s
	DeregisterAfter time.Duration // default 1m
}

// agentAPI is the part of *api.Agent this package uses.
type agentAPI interface {
	ServiceRegisterOpts(service *api.AgentServiceRegistration, opts api.ServiceRegisterOpts) error
	ServiceDeregisterOpts(serviceID string, q *api.QueryOptions) error
}

// catalogAPI is the part of *api.Catalog this package uses.
type catalogAPI interface {
	Service(service, tag string, q *api.QueryOptions) ([]*api.CatalogService, *api.QueryMeta, error)
}

var (
	_ agentAPI   = (*api.Agent)(nil)
	_ catalogAPI = (*api.Catalog)(nil)
)

// Consul registers this server in Consul and lists the others.
type Consul struct {
	cfg     ConsulConfig
	agent   agentAPI
	catalog catalogAPI
	logger  hclog.Logger

	mu        sync.Mutex
	serviceID string // set by Register, cleared by Deregister
}

// NewConsul builds a client; it does not contact Consul.
func NewConsul(cfg ConsulConfig, logger hclog.Logger) (*Consul, error) {
	if cfg.Service == "" {
		cfg.Service = DefaultService
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.DeregisterAfter == 0 {
		cfg.DeregisterAfter = DefaultDeregisterAfter
	}
	if cfg.CheckInterval < 0 || cfg.DeregisterAfter < 0 {
		return nil, fmt.Errorf("discovery: negative check interval (%s) or deregister-after (%s)", cfg.CheckInterval, cfg.DeregisterAfter)
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}

	conf := api.DefaultConfig() // reads CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...
	if cfg.Address != "" {
		conf.Address = cfg.Address
	}
	if cfg.Token != "" {
		conf.Token = cfg.Token
	}
	if cfg.Datacenter != "" {
		conf.Datacenter = cfg.Datacenter
	}
	cfg.Address = conf.Address // for error messages
	client, err := api.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("discovery: consul client for %s: %w", conf.Address, err)
	}
	return &Consul{
		cfg:     cfg,
		agent:   client.Agent(),
		catalog: client.Catalog(),
		logger:  logger.Named("discovery"),
	}, nil
}

// ServiceID is the Consul service ID under which a member registers.
func (c *Consul) ServiceID(memberID string) string { return c.cfg.Service + "-" + memberID }

// Register registers self with the local Consul agent, replacing an earlier
// registration of the same ID (and its checks).
func (c *Consul) Register(ctx context.Context, self Member) error {
	host, port, err := self.validate()
	if err != nil {
		return err
	}
	id := c.ServiceID(self.ID)
	reg := &api.AgentServiceRegistration{
		ID:      id,
		Name:    c.cfg.Service,
		Tags:    []string{c.cfg.Service},
		Address: host,
		Port:    port,
		Meta: map[string]string{
			MetaRaftAddr: self.RaftAddr,
			MetaHTTPAddr: self.HTTPAddr,
			MetaNodeID:   self.ID,
		},
		Check: &api.AgentServiceCheck{
			Name:                           c.cfg.Service + " HTTP health",
			HTTP:                           "http://" + self.HTTPAddr + HealthPath,
			Method:                         http.MethodGet,
			Interval:                       c.cfg.CheckInterval.String(),
			DeregisterCriticalServiceAfter: c.cfg.DeregisterAfter.String(),
		},
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := c.agent.ServiceRegisterOpts(reg, opts); err != nil {
		return c.wrap(err, "register service %s", id)
	}
	c.mu.Lock()
	c.serviceID = id
	c.mu.Unlock()
	c.logger.Info("registered with consul", "service_id", id, "http_addr", self.HTTPAddr, "raft_addr", self.RaftAddr)
	return nil
}

// Deregister removes the registration made by Register. It is a no-op if
// nothing is registered, and succeeds if Consul has already reaped it.
func (c *Consul) Deregister(ctx context.Context) error {
	c.mu.Lock()
	id := c.serviceID
	c.mu.Unlock()
	if id == "" {
		return nil
	}
	err := c.agent.ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(ctx))
	if code, ok := statusCode(err); ok && code == http.StatusNotFound {
		c.logger.Debug("service already gone from consul", "service_id", id)
		err = nil
	}
	if err != nil {
		return c.wrap(err, "deregister service %s", id)
	}
	c.mu.Lock()
	if c.serviceID == id {
		c.serviceID = ""
	}
	c.mu.Unlock()
	c.logger.Info("deregistered from consul", "service_id", id)
	return nil
}

// Members lists the hyperfunc servers in the Consul catalog, healthy or not,
// sorted by ID. Entries without the hyperfunc meta are skipped.
func (c *Consul) Members(ctx context.Context) ([]Member, error) {
	members, _, err := c.members(ctx, 0, 0)
	return members, err
}

// members reads the catalog; with waitIndex > 0 it is a blocking query that
// returns when the catalog index passes waitIndex or after wait.
func (c *Consul) members(ctx context.Context, waitIndex uint64, wait time.Duration) ([]Member, uint64, error) {
	q := &api.QueryOptions{AllowStale: true, WaitIndex: waitIndex, WaitTime: wait}
	entries, meta, err := c.catalog.Service(c.cfg.Service, "", q.WithContext(ctx))
	if err != nil {
		return nil, 0, c.wrap(err, "read catalog service %s", c.cfg.Service)
	}
	byID := make(map[string]*api.CatalogService, len(entries))
	for _, e := range entries {
		id, raft, httpAddr := e.ServiceMeta[MetaNodeID], e.ServiceMeta[MetaRaftAddr], e.ServiceMeta[MetaHTTPAddr]
		if id == "" || raft == "" || httpAddr == "" {
			c.logger.Debug("ignoring catalog entry without hyperfunc meta", "service_id", e.ServiceID, "node", e.Node)
			continue
		}
		// The same server can appear twice (e.g. re-registered on another
		// agent before the old entry was reaped): keep the newest.
		if prev, ok := byID[id]; !ok || e.ModifyIndex > prev.ModifyIndex {
			byID[id] = e
		}
	}
	out := make([]Member, 0, len(byID))
	for id, e := range byID {
		out = append(out, Member{ID: id, RaftAddr: e.ServiceMeta[MetaRaftAddr], HTTPAddr: e.ServiceMeta[MetaHTTPAddr]})
	}
	sortMembers(out)
	return out, meta.LastIndex, nil
}

// wrap adds the operation and the Consul address to err, and marks a
// rejected token with ErrPermissionDenied.
func (c *Consul) wrap(err error, format string, args ...any) error {
	op := fmt.Sprintf(format, args...)
	if code, ok := statusCode(err); ok && code == http.StatusForbidden {
		return fmt.Errorf("discovery: %s at consul %s: %w: %w", op, c.cfg.Address, ErrPermissionDenied, err)
	}
	return fmt.Errorf("discovery: %s at consul %s: %w", op, c.cfg.Address, err)
}

// statusCode reports the HTTP status of a consul/api error, if it has one.
func statusCode(err error) (int, bool) {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code, true
	}
	return 0, false
}

// validate checks the member and splits its advertised HTTP address.
func (m Member) validate() (host string, port int, err error) {
	if m.ID == "" || m.RaftAddr == "" || m.HTTPAddr == "" {
		return "", 0, fmt.Errorf("discovery: member needs ID, RaftAddr and HTTPAddr: %+v", m)
	}
	host, portStr, err := net.SplitHostPort(m.HTTPAddr)
	if err != nil {
		return "", 0, fmt.Errorf("discovery: member %s: HTTP address %q: %w", m.ID, m.HTTPAddr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "", 0, fmt.Errorf("discovery: member %s: HTTP address %q is not reachable by peers; advertise a routable address", m.ID, m.HTTPAddr)
	}
	port, err = strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("discovery: member %s: HTTP address %q: bad port", m.ID, m.HTTPAddr)
	}
	return host, port, nil
}

func sortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
}
