package ui

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// sel names a call's row in the UI's tables.
func callRow(id, state string) string {
	return `tr[data-call="` + id + `"][data-state="` + state + `"]`
}

// TestUI logs alice into the UI of an -acl agent, watches a call she
// makes through the API go PENDING -> RUNNING -> FINISHED on her
// function's page without a reload, downloads its output, reads a
// failure's reason (hostile markup in it shown as text), and checks that
// bob's session shows none of it. It takes the screenshots of the main
// pages on the way.
func TestUI(t *testing.T) {
	ctx := newBrowser(t) // first: without chromium nothing else is worth starting
	dc := harness.Docker(t)
	const root = "e2e-ui-root-token"
	a := harness.StartAgent(t, harness.AgentOptions{Name: "ui", Dev: true, Args: []string{"-acl", "-bootstrap-token", root}})
	bg := context.Background()
	client := a.ClientWithToken
	admin := client(root)
	tokens := map[string]string{}
	for _, u := range []string{"alice", "bob"} {
		// Quota 1: alice's second call waits in the queue behind her first.
		if _, err := admin.Users().Create(bg, &api.User{Name: u, Quota: 1}); err != nil {
			t.Fatalf("user %s: %v", u, err)
		}
		tok, err := admin.Tokens().Create(bg, &api.TokenRequest{User: u})
		if err != nil {
			t.Fatalf("token of %s: %v", u, err)
		}
		tokens[u] = tok.Secret
	}
	alice := client(tokens["alice"])
	gated, failing := harness.Name("ui-gated"), harness.Name("ui-fail")
	for _, sp := range []*api.FunctionSpec{
		{Name: gated, Image: "ubuntu", Command: gatedScript("hello-ui")},
		{Name: failing, Image: "ubuntu", Command: []string{"sh", "-c", `echo '<b id=pwned>boom</b>' >&2; exit 3`}},
	} {
		if _, err := alice.Functions().Create(bg, sp); err != nil {
			t.Fatalf("create %s: %v", sp.Name, err)
		}
	}

	// A wrong token is refused on the login form; alice's is taken.
	do(t, ctx, "open the login form", chromedp.Navigate(a.URL()+"/ui/"), visible(`#token`))
	do(t, ctx, "wrong token", chromedp.SetValue(chromedp.CSS(`#token`), "not-a-token"),
		chromedp.Click(chromedp.CSS(`#login button[type=submit]`)), visible(`#login-error`))
	screenshot(t, ctx, "ui-login")
	login(t, ctx, tokens["alice"], "alice")

	// The token is in no script-readable place, and the API takes the
	// cookie only with the UI's header.
	cookies := eval[string](t, ctx, `document.cookie`)
	bare := eval[int](t, ctx, `fetch('/v1/tokens/self', {credentials: 'same-origin'}).then(r => r.status)`)
	if cookies != "" || bare != 401 {
		t.Fatalf("document.cookie %q (want empty: HttpOnly); /v1/tokens/self without X-Hyper-UI: %d, want 401", cookies, bare)
	}

	// The function's page, then two calls: the first runs (gated), the
	// second waits behind it (quota 1).
	do(t, ctx, "function page", chromedp.Navigate(a.URL()+"/ui/#/fn/"+gated), visible(`#calls table`))
	eval[chromedp.Void](t, ctx, `window.notReloaded = true`)
	first, err := alice.Calls().Call(bg, gated, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "first call RUNNING", visible(callRow(first, api.StateRunning)))
	second, err := alice.Calls().Call(bg, gated, strings.NewReader("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "second call PENDING", visible(callRow(second, api.StatePending)))
	screenshot(t, ctx, "ui-function")
	release(t, dc, first)
	do(t, ctx, "second call RUNNING", visible(callRow(second, api.StateRunning)))
	release(t, dc, second)
	do(t, ctx, "second call FINISHED", visible(callRow(second, api.StateFinished)))
	if !eval[bool](t, ctx, `window.notReloaded === true`) {
		t.Fatal("the function's page was reloaded while the calls ran")
	}
	// The log followed the calls as they ran.
	until(t, ctx, "the log shows the end", `document.getElementById('log').textContent.includes('[FINISHED] `+second[:8]+`')`)
	screenshot(t, ctx, "ui-function-done")

	// Its output, downloaded.
	if b := download(t, ctx, callRow(second, api.StateFinished)+` button.download`); string(b) != "hello-ui\n" {
		t.Fatalf("downloaded output %q, want %q", b, "hello-ui\n")
	}

	// A failure and its reason, on the failures page; the function's
	// stderr markup is text, not an element.
	failed, err := alice.Calls().Call(bg, failing, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := harness.WaitCall(t, alice, failed, waitTimeout, false); c.State != api.StateFailed {
		t.Fatalf("failing call: %+v", c)
	}
	do(t, ctx, "failures page", chromedp.Navigate(a.URL()+"/ui/#/failures"), visible(callRow(failed, api.StateFailed)))
	msg := text(t, ctx, callRow(failed, api.StateFailed)+` td.msg`)
	if !strings.Contains(msg, "<b id=pwned>boom</b>") || eval[bool](t, ctx, `document.getElementById('pwned') !== null`) {
		t.Fatalf("failure message shown as %q, or its markup became an element", msg)
	}
	if reason := text(t, ctx, callRow(failed, api.StateFailed)+` td:nth-child(7)`); reason != api.ReasonExit {
		t.Fatalf("failure reason shown %q, want %q", reason, api.ReasonExit)
	}
	screenshot(t, ctx, "ui-failures")

	// The other pages, with something on them: a running call, the queue
	// with alice's quota, the cluster.
	running, err := alice.Calls().Call(bg, gated, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "running page", chromedp.Navigate(a.URL()+"/ui/#/running"), visible(callRow(running, api.StateRunning)))
	screenshot(t, ctx, "ui-running")
	do(t, ctx, "queue page", chromedp.Navigate(a.URL()+"/ui/#/queue"), visible(`tr[data-user="alice"]`))
	if q := text(t, ctx, `tr[data-user="alice"] td:nth-child(2)`); q != "1" {
		t.Fatalf("alice's quota shown %q, want 1", q)
	}
	screenshot(t, ctx, "ui-queue")
	release(t, dc, running)
	do(t, ctx, "functions page", chromedp.Navigate(a.URL()+"/ui/#/functions"), visible(`tr[data-fn="`+failing+`"]`))
	until(t, ctx, "functions page counts 3 finished", `document.querySelector('tr[data-fn="`+gated+`"] td:nth-child(6)').textContent === '3'`)
	screenshot(t, ctx, "ui-functions")
	// Past 50 functions the list pages by name (the API's limit and after).
	for i := range 50 {
		if _, err := alice.Functions().Create(bg, &api.FunctionSpec{Name: fmt.Sprintf("zz-%02d", i), Image: "ubuntu"}); err != nil {
			t.Fatalf("create zz-%02d: %v", i, err)
		}
	}
	do(t, ctx, "functions page 1", visible(`tr[data-fn="zz-47"]`), chromedp.WaitNotPresent(chromedp.CSS(`tr[data-fn="zz-48"]`)))
	do(t, ctx, "functions page 2", chromedp.Click(chromedp.CSS(`button.next-page`)), visible(`tr[data-fn="zz-49"]`),
		chromedp.WaitNotPresent(chromedp.CSS(`tr[data-fn="`+gated+`"]`)))
	do(t, ctx, "back to page 1", chromedp.Click(chromedp.CSS(`button.first-page`)), visible(`tr[data-fn="`+gated+`"]`))
	do(t, ctx, "cluster page", chromedp.Navigate(a.URL()+"/ui/#/cluster"), visible(`[data-check="executor"].ok`), visible(`#raft-index`))
	screenshot(t, ctx, "ui-cluster")

	// Bob, in his own browser session, sees none of it.
	bob := otherSession(t, ctx)
	do(t, bob, "bob opens the UI", chromedp.Navigate(a.URL()+"/ui/"), visible(`#token`))
	login(t, bob, tokens["bob"], "bob")
	for _, page := range []string{"functions", "failures", "running"} {
		do(t, bob, "bob's "+page, chromedp.Navigate(a.URL()+"/ui/#/"+page), visible(`#view table td.muted`))
		shown := text(t, bob, `#view`)
		for _, leak := range []string{gated, failing, first, second, failed} {
			if strings.Contains(shown, leak) {
				t.Fatalf("bob's %s page shows alice's %s:\n%s", page, leak, shown)
			}
		}
	}
	do(t, bob, "bob on alice's function", chromedp.Navigate(a.URL()+"/ui/#/fn/"+gated))
	until(t, bob, "bob is told it is not found", `document.getElementById('error').textContent.includes('not found')`)
	if shown := text(t, bob, `#view`); strings.Contains(shown, second) || strings.Contains(shown, "hello-ui") {
		t.Fatalf("bob's view of alice's function shows her calls:\n%s", shown)
	}
	if st := eval[int](t, bob, `fetch('/v1/calls/`+second+`/output', {headers: {'X-Hyper-UI': '1'}}).then(r => r.status)`); st != 404 {
		t.Fatalf("bob's session fetching alice's output: %d, want 404", st)
	}
}

// login fills the login form of a tab showing it and waits for the
// pages, signed in as user.
func login(t *testing.T, ctx context.Context, token, user string) {
	t.Helper()
	do(t, ctx, "login as "+user, chromedp.SetValue(chromedp.CSS(`#token`), token),
		chromedp.Click(chromedp.CSS(`#login button[type=submit]`)))
	until(t, ctx, "logged in as "+user, `(document.getElementById('user') || {}).textContent === '`+user+`'`)
}
