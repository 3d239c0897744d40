package nomadtest

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// RealAddr is the address of the real Nomad agent the real-Nomad tests run
// against: NOMAD_ADDR, as `make test` exports it after scripts/nomad-dev.sh
// started a dev agent (docker driver, runsc allowed, the hf-shim host
// volume). Without one the test is skipped with a loud reason on stderr;
// with CI set (CI=true, as CI systems set it) it fails instead, so that a
// missing agent never passes for a green suite. A NOMAD_ADDR that does not
// answer fails the test.
func RealAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("NOMAD_ADDR")
	if addr == "" {
		why := "NOMAD_ADDR is not set: no real Nomad agent (make test starts one with scripts/nomad-dev.sh " +
			"when a Nomad binary is found: NOMAD_BIN, nomad on PATH, or ../shared/nomad)"
		if ci() {
			t.Fatalf("real-Nomad test cannot run in CI: %s", why)
		}
		fmt.Fprintf(os.Stderr, "\n*** SKIPPED %s: %s ***\n\n", t.Name(), why)
		t.Skip("SKIPPED (no real Nomad): " + why)
	}
	c := &http.Client{Timeout: 30 * time.Second} // a busy agent is slow; in CI no answer fails the run
	resp, err := c.Get(strings.TrimRight(addr, "/") + "/v1/status/leader")
	if err != nil {
		t.Fatalf("real Nomad at NOMAD_ADDR=%s does not answer: %v", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("real Nomad at NOMAD_ADDR=%s: leader status %s", addr, resp.Status)
	}
	return addr
}

// ShimVolume is the client host volume that holds hf-shim on the real
// agent (scripts/nomad-dev.sh declares "hf-shim"); HF_NOMAD_SHIM_VOLUME
// overrides it, "-" means none (the shim comes as an artifact).
func ShimVolume() string {
	switch v := os.Getenv("HF_NOMAD_SHIM_VOLUME"); v {
	case "":
		return "hf-shim"
	case "-":
		return ""
	default:
		return v
	}
}

func ci() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "false" && v != "0"
}
