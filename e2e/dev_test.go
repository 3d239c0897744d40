package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

// waitListening waits until something accepts connections on the agent's
// HTTP address: what a script that starts an agent checks before using it.
func waitListening(t *testing.T, a *harness.Agent) {
	t.Helper()
	harness.Eventually(t, callTimeout, func() (bool, string) {
		c, err := net.DialTimeout("tcp", a.HTTPAddr, time.Second)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})
}

// TestDevAgentFirstUser: `hyper func create` and a call sent as soon as a
// fresh dev agent's HTTP port accepts connections succeed: no "no cluster
// leader" while it elects itself.
func TestDevAgentFirstUser(t *testing.T) {
	t.Parallel()
	harness.Docker(t)
	for i := range 3 { // the race was with the election: try it a few times
		a := harness.LaunchAgent(t, harness.AgentOptions{Name: fmt.Sprintf("first%d", i), Dev: true})
		waitListening(t, a)
		name := harness.Name("first")
		harness.Hyper(t, a, nil, "func", "create", "--name", name, "ubuntu", "echo", "hi").Must(t, "create on a fresh agent")
		r := harness.Hyper(t, a, nil, "func", "call", "--sync", name).Must(t, "call")
		if string(r.Stdout) != "hi\n" {
			t.Fatalf("output %q", r.Stdout)
		}
		a.Kill()
	}
}

// TestDevAgentWithACL: `-dev -acl` says ACLs are on (not "ACLs off"), and
// where the bootstrap token is, which then works with hyper.
func TestDevAgentWithACL(t *testing.T) {
	t.Parallel()
	harness.Docker(t)
	a := harness.StartAgent(t, harness.AgentOptions{Name: "devacl", Dev: true, Args: []string{"-acl"}})
	var log string
	harness.Eventually(t, callTimeout, func() (bool, string) {
		log = a.Log()
		return strings.Contains(log, "==> hyperfunc dev agent"), "no banner in the log yet"
	})
	if strings.Contains(log, "ACLs off") || !strings.Contains(log, "ACLs on") {
		t.Fatalf("the banner of -dev -acl:\n%s", log)
	}
	tokFile := filepath.Join(a.DataDir, "bootstrap-token")
	if !strings.Contains(log, "HYPER_TOKEN=$(cat "+tokFile+")") {
		t.Errorf("the banner does not say where the token is (%s):\n%s", tokFile, log)
	}
	tok, err := os.ReadFile(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	if r := harness.Hyper(t, a, nil, "func", "ls"); r.Code == 0 {
		t.Errorf("hyper without a token on -acl: %s", r)
	}
	r := harness.Sh(t, a, a.DataDir, "HYPER_TOKEN="+strings.TrimSpace(string(tok))+" hyper func ls")
	r.Must(t, "hyper func ls with the bootstrap token")
}
