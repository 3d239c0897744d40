package consultest_test

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hyperfunc/hyperfunc/discovery/consultest"
)

// The fake is checked with the real client, so it stays faithful to the
// wire format consul/api expects.
func TestBlockingCatalogQuery(t *testing.T) {
	srv := consultest.New(t)
	client, err := api.NewClient(&api.Config{Address: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	catalog := client.Catalog()

	entries, meta, err := catalog.Service("web", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 || meta.LastIndex == 0 || !meta.KnownLeader {
		t.Fatalf("empty catalog: entries %v, meta %+v", entries, meta)
	}

	// No change: the query blocks for the whole wait and returns the same index.
	start := time.Now()
	_, again, err := catalog.Service("web", "", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if again.LastIndex != meta.LastIndex || time.Since(start) < 50*time.Millisecond {
		t.Errorf("unchanged blocking query: index %d -> %d after %s", meta.LastIndex, again.LastIndex, time.Since(start))
	}

	// A registration wakes it (whether it lands before or during the query).
	done := make(chan []*api.CatalogService, 1)
	go func() {
		got, m, err := catalog.Service("web", "", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		switch {
		case err != nil: // m is nil then
			t.Errorf("woken query: %v", err)
		case m.LastIndex <= meta.LastIndex:
			t.Errorf("woken query: index %d, not past %d", m.LastIndex, meta.LastIndex)
		}
		done <- got
	}()
	reg := &api.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "10.0.0.1", Port: 80, Meta: map[string]string{"k": "v"}, Tags: []string{"t"}}
	if err := client.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if len(got) != 1 || got[0].ServiceID != "web-1" || got[0].ServiceAddress != "10.0.0.1" || got[0].ServicePort != 80 ||
			got[0].ServiceMeta["k"] != "v" || got[0].Node != consultest.Node {
			t.Errorf("catalog after register = %+v", got)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("blocking query not woken by a registration")
	}
}
