package main

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/discovery/consultest"
	"github.com/hyperfunc/hyperfunc/server"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// TestConsulBootstrap: three agents that know nothing of each other but
// the Consul agent's address register there, find each other in the
// catalog and bootstrap one cluster, as Nomad servers do.
func TestConsulBootstrap(t *testing.T) {
	consul := consultest.New(t)
	engine := servertest.NewEngine()
	var servers []*server.Server
	for i := 0; i < 3; i++ {
		d, err := newConsulDiscovery(consul.Addr(), "", hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		// :0, bound and then advertised, as servertest does: a port picked
		// and freed first may be taken before the server binds it.
		s, err := server.New(server.Config{
			DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", ClusterKey: servertest.ClusterKey,
			BootstrapExpect: 3, Discovery: d, Executor: engine.NewExecutor(),
			RaftTuning: servertest.ShortTimers,
			Logger:     hclog.New(&hclog.LoggerOptions{Output: io.Discard}),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Shutdown(false) })
		servers = append(servers, s)
	}
	deadline := time.Now().Add(2 * time.Minute) // only a hang: a loaded machine is slow
	for {
		leaders, voters := 0, 0
		for _, s := range servers {
			if s.IsLeader() {
				leaders++
				voters = len(s.Raft().GetConfiguration().Configuration().Servers)
			}
		}
		if leaders == 1 && voters == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no single leader of three voters: %d leaders, %d voters", leaders, voters)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Every server registered its addresses and a health check on /v1/agent/health.
	for _, s := range servers {
		reg, ok := consul.Registration("hyperfunc-" + s.NodeID())
		if !ok || reg.Meta["raft_addr"] != s.RaftAddr() || reg.Meta["http_addr"] != s.HTTPAddr() ||
			reg.Check == nil || reg.Check.HTTP != "http://"+s.HTTPAddr()+"/v1/agent/health" {
			t.Fatalf("registration of %s: %+v", s.NodeID(), reg)
		}
	}
	// And the cluster works through any of them.
	for i, s := range servers {
		c, _ := api.NewClient(&api.Config{Address: s.HTTPAddr()})
		until := time.Now().Add(2 * time.Minute)
		for {
			_, err := c.Functions().Create(context.Background(), &api.FunctionSpec{Name: "f" + string(rune('a'+i)), Image: "busybox"})
			if err == nil {
				break
			}
			if time.Now().After(until) {
				t.Fatalf("create through server %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
