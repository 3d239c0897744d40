package ui

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// Without -acl (a dev agent on loopback) the UI asks for no token, shows
// no logout, and its user is the admin "default", who sees the servers of
// the Raft configuration on the cluster page.
func TestUINoACL(t *testing.T) {
	ctx := newBrowser(t)
	a := harness.StartAgent(t, harness.AgentOptions{Name: "ui-noacl", Dev: true})
	do(t, ctx, "open the UI", chromedp.Navigate(a.URL()+"/ui/"), visible(`#functions`))
	until(t, ctx, "user default", `document.getElementById('user').textContent === 'default'`)
	if !eval[bool](t, ctx, `document.getElementById("logout").hidden && !document.getElementById("token")`) {
		t.Fatal("a login form or a logout button without ACLs")
	}
	do(t, ctx, "cluster page", chromedp.Navigate(a.URL()+"/ui/#/cluster"), visible(`#servers table`))
	until(t, ctx, "this agent leads", `document.getElementById('servers').textContent.includes('leader')`)
	screenshot(t, ctx, "ui-cluster-dev")
}
