package server_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/fsm"
	"github.com/hyperfunc/hyperfunc/server"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

// peerStream plays a Raft peer: plain TCP (tlsCfg nil) or TLS with some key.
type peerStream struct {
	net.Listener
	tlsCfg *tls.Config
}

func (p *peerStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if p.tlsCfg == nil {
		return d.Dial("tcp", string(addr))
	}
	return tls.DialWithDialer(d, "tcp", string(addr), p.tlsCfg)
}

// forgeTokenEntry sends what the attacker of issue 9 sent: one
// AppendEntries with a higher term that carries a TokenUpsert of an admin
// token whose secret the attacker knows.
func forgeTokenEntry(t *testing.T, target *server.Server, tlsCfg *tls.Config, secret string) error {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &peerStream{Listener: l, tlsCfg: tlsCfg}, MaxPool: 1, Timeout: time.Minute, // only a hang: a refused peer fails at its handshake
		Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}),
	})
	defer trans.Close()
	r := target.Raft()
	stats := r.Stats()
	term, _ := strconv.ParseUint(stats["term"], 10, 64)
	lastIdx, _ := strconv.ParseUint(stats["last_log_index"], 10, 64)
	lastTerm, _ := strconv.ParseUint(stats["last_log_term"], 10, 64)
	data, err := fsm.Encode(fsm.TokenUpsertType, &fsm.TokenUpsertRequest{Token: &fsm.Token{
		AccessorID: "forged", SecretHash: server.HashSecret(secret), User: "admin", CreatedAt: time.Now(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("attacker"), Addr: []byte(l.Addr().String())},
		Term:      term + 10, PrevLogEntry: lastIdx, PrevLogTerm: lastTerm,
		Entries:           []*raft.Log{{Index: lastIdx + 1, Term: term + 10, Type: raft.LogCommand, Data: data}},
		LeaderCommitIndex: lastIdx + 1,
	}
	var resp raft.AppendEntriesResponse
	if err := trans.AppendEntries("victim", raft.ServerAddress(target.RaftAddr()), req, &resp); err != nil {
		return err
	}
	if !resp.Success {
		t.Fatalf("the forged AppendEntries reached Raft but was not accepted: %+v", resp)
	}
	return nil
}

// usersWith reads /v1/users with a token and answers the status.
func usersWith(t *testing.T, url, secret string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/users?stale", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The Raft port takes entries only from a peer that proves the cluster
// key: a plain TCP peer and a TLS peer with another key are refused before
// Raft sees a byte, and their planted token opens nothing. The same RPC
// from a peer with the key is applied: the control that shows the forged
// entry is a real attack, not a malformed request.
func TestForgedRaftRPC(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tlsKey  string // "" for plain TCP
		refused bool
	}{
		{"plain TCP", "", true},
		{"TLS with another key", "some-other-cluster-key", true},
		{"TLS with the cluster key (control)", servertest.ClusterKey, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := servertest.NewCluster(t, 1, servertest.Options{ACL: true})
			c.WaitForLeader()
			var cfg *tls.Config
			if tc.tlsKey != "" {
				var err error
				if cfg, err = server.ClusterTLS(tc.tlsKey); err != nil {
					t.Fatal(err)
				}
			}
			secret := "planted-" + strings.ReplaceAll(tc.name, " ", "-")
			err := forgeTokenEntry(t, c.Server(0), cfg, secret)
			if tc.refused {
				if err == nil {
					t.Fatal("the forged AppendEntries was answered")
				}
				if code := usersWith(t, c.URL(0), secret); code != http.StatusUnauthorized && code != http.StatusForbidden {
					t.Fatalf("planted token: GET /v1/users = %d, want 401 or 403", code)
				}
				return
			}
			if err != nil {
				t.Fatalf("a peer with the key: %v", err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for usersWith(t, c.URL(0), secret) != http.StatusOK {
				if time.Now().After(deadline) {
					t.Fatal("the control's entry was never applied")
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// The internal routes answer only the cluster's token: not an empty one,
// not the raw key, not another cluster's.
func TestForgedInternalRequests(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{ACL: true})
	c.WaitForLeader()
	routes := []string{"/v1/internal/join", "/v1/internal/member", "/v1/internal/leave", "/v1/internal/enqueue"}
	for _, header := range []string{"", servertest.ClusterKey, server.InternalToken("some-other-cluster-key")} {
		for _, r := range routes {
			req, _ := http.NewRequest(http.MethodPost, c.URL(0)+r, strings.NewReader(`{"id":"x","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`))
			if header != "" {
				req.Header.Set("X-Hyper-Cluster-Key", header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s with cluster header %q: %d, want 403", r, header, resp.StatusCode)
			}
		}
	}
	if peers := c.Server(0).Raft().GetConfiguration(); peers.Error() != nil || len(peers.Configuration().Servers) != 1 {
		t.Fatalf("the configuration changed: %+v", peers.Configuration().Servers)
	}
}

// Strangers that connect to the Raft port and say nothing do not stop the
// cluster, and none is held for good: past maxPendingHandshakes they are
// closed at once, the others when their handshake times out.
func TestRaftPortFlood(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	c.WaitForLeader()
	const n = 300
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	for range n {
		cn, err := net.Dial("tcp", c.Server(0).RaftAddr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, cn)
	}
	createFn(t, c.Client(0), "still-writable", "cat")
	for i, cn := range conns {
		_ = cn.SetReadDeadline(time.Now().Add(2 * time.Minute)) // only catches a hang
		if _, err := cn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("silent connection %d: %v, want closed by the server", i, err)
		}
	}
	// They never reached Raft's transport: no error per stranger in the log.
	if n := strings.Count(c.Node(0).Log.String(), "failed to decode incoming command"); n > 0 {
		t.Fatalf("the Raft transport logged %d strangers' connections", n)
	}
}
