package discovery_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hyperfunc/hyperfunc/discovery"
	"github.com/hyperfunc/hyperfunc/discovery/consultest"
)

const poll = 20 * time.Millisecond

func member(id string, n int) discovery.Member {
	return discovery.Member{
		ID:       id,
		RaftAddr: fmt.Sprintf("127.0.0.1:%d", 7000+n),
		HTTPAddr: fmt.Sprintf("127.0.0.1:%d", 8000+n),
	}
}

func newClient(t *testing.T, cfg discovery.ConsulConfig) *discovery.Consul {
	t.Helper()
	c, err := discovery.NewConsul(cfg, hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("NewConsul: %v", err)
	}
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // only a hang
	t.Cleanup(cancel)
	return ctx
}

func TestDiscoverFindsAllThree(t *testing.T) {
	t.Parallel()
	srv := consultest.New(t)
	ctx := testCtx(t)
	want := []discovery.Member{member("a", 1), member("b", 2), member("c", 3)}

	// Every server starts discovering before its peers register, as in a
	// real rolling start; the blocking queries must see the later ones.
	var wg sync.WaitGroup
	got := make([][]discovery.Member, len(want))
	errs := make([]error, len(want))
	for i, m := range want {
		c := newClient(t, discovery.ConsulConfig{Address: srv.Addr()})
		if err := c.Register(ctx, m); err != nil {
			t.Fatalf("register %s: %v", m.ID, err)
		}
		wg.Go(func() { got[i], errs[i] = c.Discover(ctx, m, len(want), poll) })
	}
	wg.Wait()
	for i := range want {
		if errs[i] != nil {
			t.Fatalf("discover from %s: %v", want[i].ID, errs[i])
		}
		if !slices.Equal(got[i], want) {
			t.Errorf("discover from %s = %v, want %v", want[i].ID, got[i], want)
		}
	}
}

func TestDeregisterRemovesMember(t *testing.T) {
	t.Parallel()
	srv := consultest.New(t)
	ctx := testCtx(t)
	a := newClient(t, discovery.ConsulConfig{Address: srv.Addr()})
	b := newClient(t, discovery.ConsulConfig{Address: srv.Addr()})
	mustRegister(t, a, member("a", 1))
	mustRegister(t, b, member("b", 2))

	if err := b.Deregister(ctx); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	if _, ok := srv.Registration("hyperfunc-b"); ok {
		t.Error("agent still has hyperfunc-b")
	}
	got, err := a.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []discovery.Member{member("a", 1)}; !slices.Equal(got, want) {
		t.Errorf("members = %v, want %v", got, want)
	}
	if err := b.Deregister(ctx); err != nil {
		t.Errorf("second deregister should be a no-op, got %v", err)
	}
}

func TestMembersIgnoresEntryWithoutMeta(t *testing.T) {
	t.Parallel()
	srv := consultest.New(t)
	var logs bytes.Buffer
	c, err := discovery.NewConsul(discovery.ConsulConfig{Address: srv.Addr()},
		hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug}))
	if err != nil {
		t.Fatal(err)
	}
	mustRegister(t, c, member("a", 1))
	srv.AddCatalogEntry(consultest.CatalogService{
		ServiceID: "hyperfunc-manual", ServiceName: "hyperfunc", ServiceAddress: "10.0.0.9", ServicePort: 8080,
	})
	srv.AddCatalogEntry(consultest.CatalogService{ // half the meta is no better
		ServiceID: "hyperfunc-partial", ServiceName: "hyperfunc", ServiceMeta: map[string]string{"node_id": "p"},
	})

	got, err := c.Members(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := []discovery.Member{member("a", 1)}; !slices.Equal(got, want) {
		t.Errorf("members = %v, want %v", got, want)
	}
	if !strings.Contains(logs.String(), "service_id=hyperfunc-manual") {
		t.Errorf("no debug log for the skipped entry; logs:\n%s", logs.String())
	}
}

func TestDiscoverRetriesWhileConsulFails(t *testing.T) {
	t.Parallel()
	srv := consultest.New(t)
	ctx := testCtx(t)
	c := newClient(t, discovery.ConsulConfig{Address: srv.Addr()})
	for i, id := range []string{"a", "b", "c"} {
		mustRegister(t, c, member(id, i+1))
	}

	srv.FailNext(3)
	got, err := c.Discover(ctx, member("a", 1), 3, poll)
	if err != nil {
		t.Fatalf("discover after consul recovered: %v", err)
	}
	if len(got) != 3 {
		t.Errorf("discover = %v, want 3 members", got)
	}
	if n := srv.Failed(); n != 3 {
		t.Errorf("consul answered %d injected 500s, want 3", n)
	}
}

func TestDiscoverTimesOutWithCount(t *testing.T) {
	t.Parallel()
	srv := consultest.New(t)
	c := newClient(t, discovery.ConsulConfig{Address: srv.Addr()})
	mustRegister(t, c, member("a", 1))
	mustRegister(t, c, member("b", 2))

	// The deadline must come after Discover's first catalog read (else it
	// saw 0): 5 s, not 200 ms, for a busy machine's first round trip.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := c.Discover(ctx, member("a", 1), 3, poll)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "saw 2 of 3") {
		t.Errorf("error should say how many were seen: %v", err)
	}
}

func TestWrongToken(t *testing.T) {
	srv := consultest.New(t)
	srv.RequireToken("secret")
	ctx := testCtx(t)

	bad := newClient(t, discovery.ConsulConfig{Address: srv.Addr(), Token: "wrong"})
	err := bad.Register(ctx, member("a", 1))
	if !errors.Is(err, discovery.ErrPermissionDenied) || !strings.Contains(err.Error(), "ACL not found") {
		t.Fatalf("register with wrong token: %v", err)
	}
	// Discover must fail at once, not retry until the deadline.
	_, err = bad.Discover(ctx, member("a", 1), 2, poll)
	if !errors.Is(err, discovery.ErrPermissionDenied) || ctx.Err() != nil {
		t.Fatalf("discover with wrong token: %v (ctx: %v)", err, ctx.Err())
	}

	// Address and token from the environment, as the consul CLI reads them.
	t.Setenv("CONSUL_HTTP_ADDR", srv.Addr())
	t.Setenv("CONSUL_HTTP_TOKEN", "secret")
	good := newClient(t, discovery.ConsulConfig{})
	mustRegister(t, good, member("a", 1))
	if got, err := good.Members(ctx); err != nil || len(got) != 1 {
		t.Fatalf("members with the right token = %v, %v", got, err)
	}
}

func TestRegistrationShape(t *testing.T) {
	t.Parallel()
	srv := consultest.New(t)
	c := newClient(t, discovery.ConsulConfig{Address: srv.Addr(), CheckInterval: 5 * time.Second, DeregisterAfter: 2 * time.Minute})
	mustRegister(t, c, discovery.Member{ID: "n1", RaftAddr: "10.0.0.1:7000", HTTPAddr: "10.0.0.1:8080"})

	reg, ok := srv.Registration("hyperfunc-n1")
	if !ok {
		t.Fatal("hyperfunc-n1 not registered")
	}
	if reg.Name != "hyperfunc" || reg.Address != "10.0.0.1" || reg.Port != 8080 || !slices.Equal(reg.Tags, []string{"hyperfunc"}) {
		t.Errorf("registration = %+v", reg)
	}
	wantMeta := map[string]string{"raft_addr": "10.0.0.1:7000", "http_addr": "10.0.0.1:8080", "node_id": "n1"}
	if fmt.Sprint(reg.Meta) != fmt.Sprint(wantMeta) {
		t.Errorf("meta = %v, want %v", reg.Meta, wantMeta)
	}
	if reg.Check == nil {
		t.Fatal("no check registered")
	}
	if reg.Check.HTTP != "http://10.0.0.1:8080/v1/agent/health" || reg.Check.Interval != "5s" || reg.Check.DeregisterCriticalServiceAfter != "2m0s" {
		t.Errorf("check = %+v", *reg.Check)
	}
}

func TestRegisterRejectsBadMember(t *testing.T) {
	t.Parallel()
	srv := consultest.New(t)
	c := newClient(t, discovery.ConsulConfig{Address: srv.Addr()})
	for _, m := range []discovery.Member{
		{RaftAddr: "10.0.0.1:7000", HTTPAddr: "10.0.0.1:8080"},         // no ID
		{ID: "a", HTTPAddr: "10.0.0.1:8080"},                           // no Raft address
		{ID: "a", RaftAddr: "10.0.0.1:7000", HTTPAddr: "10.0.0.1"},     // no port
		{ID: "a", RaftAddr: "10.0.0.1:7000", HTTPAddr: ":8080"},        // no host
		{ID: "a", RaftAddr: "10.0.0.1:7000", HTTPAddr: "0.0.0.0:8080"}, // bind-all, not an advertise address
	} {
		if err := c.Register(t.Context(), m); err == nil {
			t.Errorf("Register(%+v) succeeded, want error", m)
		}
	}
}

func mustRegister(t *testing.T, c *discovery.Consul, m discovery.Member) {
	t.Helper()
	if err := c.Register(t.Context(), m); err != nil {
		t.Fatalf("register %s: %v", m.ID, err)
	}
}
