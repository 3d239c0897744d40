package chaos

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hyperfunc/hyperfunc/internal/testnet"
)

// TestPublicLBSkipsRefusingServer: with two of three servers in the rotation
// refusing connections (started, not listening yet), every download still
// reaches the one that answers. Before, each retry picked at random and five
// picks of the same refusing server gave the download a 502 (stop 18's CI).
func TestPublicLBSkipsRefusingServer(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "shim bytes")
	}))
	defer up.Close()
	c := &cluster{}
	for i, addr := range []string{testnet.ClosedAddr(t), strings.TrimPrefix(up.URL, "http://"), testnet.ClosedAddr(t)} {
		c.nodes = append(c.nodes, &node{c: c, idx: i, httpAddr: addr, state: nodeRunning})
	}
	lb, err := newPublicLB(c)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	for i := 0; i < 50; i++ {
		resp, err := http.Get("http://" + lb.Addr() + "/v1/artifacts/hf-shim.tar.gz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "shim bytes" {
			t.Fatalf("download %d: %d %q", i, resp.StatusCode, body)
		}
	}
	for _, n := range c.nodes {
		if k := lb.busy(n.httpAddr); k != 0 {
			t.Errorf("%s: %d requests still counted in flight", n.httpAddr, k)
		}
	}
}
