package main

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/discovery"
)

// consulDiscovery adapts discovery.Consul to server.Discovery.
type consulDiscovery struct{ c *discovery.Consul }

func newConsulDiscovery(addr, token string, logger hclog.Logger) (*consulDiscovery, error) {
	c, err := discovery.NewConsul(discovery.ConsulConfig{Address: addr, Token: token}, logger.Named("consul"))
	if err != nil {
		return nil, err
	}
	return &consulDiscovery{c: c}, nil
}

func (d *consulDiscovery) Register(ctx context.Context, m api.Member) error {
	return d.c.Register(ctx, discovery.Member{ID: m.ID, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr})
}

func (d *consulDiscovery) Deregister(ctx context.Context) error { return d.c.Deregister(ctx) }

func (d *consulDiscovery) Members(ctx context.Context) ([]api.Member, error) {
	ms, err := d.c.Members(ctx)
	out := make([]api.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, api.Member{ID: m.ID, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr})
	}
	return out, err
}
