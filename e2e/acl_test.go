package e2e

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// TestUserIsolation runs an agent with ACLs on and two users: a token of
// alice sees and touches only alice's functions, calls, outputs and logs;
// bob's token finds none of them (404, not 403: names do not leak), and
// may use the same function name for his own. Through the API and `hyper`.
func TestUserIsolation(t *testing.T) {
	t.Parallel()
	const root = "e2e-root-token"
	a := harness.StartAgent(t, harness.AgentOptions{Name: "acl", Dev: true, Args: []string{"-acl", "-bootstrap-token", root}})
	ctx := context.Background()
	client := a.ClientWithToken
	admin := client(root)
	token := func(user string, readOnly bool) string {
		tok, err := admin.Tokens().Create(ctx, &api.TokenRequest{User: user, ReadOnly: readOnly})
		if err != nil {
			t.Fatalf("token for %s: %v", user, err)
		}
		return tok.Secret
	}
	for _, u := range []string{"alice", "bob"} {
		if _, err := admin.Users().Create(ctx, &api.User{Name: u, Quota: 2}); err != nil {
			t.Fatalf("user %s: %v", u, err)
		}
	}
	aliceTok, bobTok, aliceRO := token("alice", false), token("bob", false), token("alice", true)
	alice, bob := client(aliceTok), client(bobTok)

	name := "iso-" + harness.RunID()
	if _, err := alice.Functions().Create(ctx, &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"echo", "alice"}}); err != nil {
		t.Fatal(err)
	}
	id, err := alice.Calls().Call(ctx, name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := harness.WaitCall(t, alice, id, callTimeout, false); c.State != api.StateFinished {
		t.Fatalf("alice's call: %+v", c)
	}

	// Bob sees nothing of alice's.
	if fs, _, err := bob.Functions().List(ctx, nil, nil); err != nil || len(fs) != 0 {
		t.Fatalf("bob lists %d functions (%v)", len(fs), err)
	}
	for what, err := range map[string]error{
		"info":   third(bob.Functions().Info(ctx, name, nil)),
		"call":   second(bob.Calls().Call(ctx, name, nil, nil)),
		"status": second(bob.Functions().Status(ctx, name)),
		"delete": bob.Functions().Delete(ctx, name),
		"get":    third(bob.Calls().Output(ctx, id, false)),
		"cancel": bob.Calls().Cancel(ctx, id),
		"logs":   bob.Calls().Logs(ctx, name, nil, func(api.LogEvent) error { return nil }),
	} {
		if api.StatusCode(err) != 404 {
			t.Errorf("bob %s on alice's function or call: %v, want 404", what, err)
		}
	}
	// The same name is bob's own function, separate from alice's.
	if _, err := bob.Functions().Create(ctx, &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"echo", "bob"}}); err != nil {
		t.Fatalf("bob's function of the same name: %v", err)
	}
	body, _, err := bob.Calls().CallSync(ctx, name, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(body)
	body.Close()
	if string(out) != "bob\n" {
		t.Fatalf("bob's call answered %q", out)
	}
	// Alice's output is still hers.
	rc, _, err := alice.Calls().Output(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	out, _ = io.ReadAll(rc)
	rc.Close()
	if string(out) != "alice\n" {
		t.Fatalf("alice's output %q", out)
	}

	// A read-only token reads but does not call; no token is 401.
	ro := client(aliceRO)
	if _, _, err := ro.Functions().Info(ctx, name, nil); err != nil {
		t.Fatalf("read-only info: %v", err)
	}
	if _, err := ro.Calls().Call(ctx, name, nil, nil); api.StatusCode(err) != 403 {
		t.Fatalf("read-only call: %v, want 403", err)
	}
	if _, _, err := client("").Functions().List(ctx, nil, nil); api.StatusCode(err) != 401 {
		t.Fatalf("no token: %v, want 401", err)
	}

	// The CLI says the same: bob cannot fetch alice's call.
	r := harness.Hyper(t, a, nil, "--token", bobTok, "func", "get", id)
	if r.Code != 1 || !strings.Contains(string(r.Stderr), "not found") {
		t.Fatalf("hyper func get of alice's call as bob: %s", r)
	}
	r = harness.Hyper(t, a, nil, "--token", aliceTok, "func", "get", id)
	if r.Code != 0 || string(r.Stdout) != "alice\n" {
		t.Fatalf("hyper func get as alice: %s", r)
	}
}

func second[T any](_ T, err error) error { return err }

func third[A, B any](_ A, _ B, err error) error { return err }
