package bench

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/fsm"
	"github.com/hyperfunc/hyperfunc/server"
)

// stdin32 is the body of every benchmarked call: small, as most are.
var stdin32 = bytes.Repeat([]byte("x"), 32)

const benchFunction = "bench"

// clusterForEnqueue is a three-node cluster with the fake executor and one
// function. The queue bound is lifted: with calls arriving faster than
// the dispatcher (default quota 10) drains them, a bounded queue would
// answer 429 and the benchmark would measure the bound, not the path.
func clusterForEnqueue(b *testing.B) *cluster {
	b.Helper()
	c := startCluster(b, 3, func() server.Executor { return newFakeExec() }, func(cfg *server.Config) {
		cfg.MaxQueued = 1 << 30
	})
	cl := apiClient(b, c.leader().HTTPAddr(), nil)
	_, err := cl.Functions().Create(context.Background(), &api.FunctionSpec{Name: benchFunction, Image: "ubuntu", Command: []string{"cat"}})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkEnqueue measures committed call enqueues per second on a
// three-node loopback cluster (BoltDB on disk, real Raft over TCP).
//
//   - http: async calls POSTed to the leader. An async call is answered
//     once its enqueue is committed, so each answered call is one committed
//     enqueue; concurrent requests share Raft entries through the server's
//     enqueue batcher.
//   - raft: one CallEnqueue command per raft.Apply on the leader, no HTTP
//     and no batcher: what Raft and the disk give without the batching (the
//     server's enqueuer is unexported, so this is the closest in-process
//     path a package outside server can take).
func BenchmarkEnqueue(b *testing.B) {
	c := clusterForEnqueue(b)
	leader := c.leader()
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("http/clients=%d", clients), func(b *testing.B) {
			cl := apiClient(b, leader.HTTPAddr(), httpClient(clients))
			runClients(b, clients, "enqueues", func(_, _ int) error {
				_, err := cl.Calls().Call(context.Background(), benchFunction, bytes.NewReader(stdin32), nil)
				return err
			})
		})
	}
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("raft/clients=%d", clients), func(b *testing.B) {
			r := leader.Raft()
			runClients(b, clients, "enqueues", func(_, _ int) error {
				call := &fsm.Call{
					ID: uuid.NewString(), Function: fsm.FunctionID(server.DefaultUser, benchFunction),
					Owner: server.DefaultUser, Stdin: stdin32, CreatedAt: time.Now().UTC(),
				}
				buf, err := fsm.Encode(fsm.CallEnqueueType, &fsm.CallEnqueueRequest{Calls: []*fsm.Call{call}})
				if err != nil {
					return err
				}
				f := r.Apply(buf, 10*time.Second)
				if err := f.Error(); err != nil {
					return err
				}
				if res, ok := f.Response().(*fsm.EnqueueResult); !ok || res.Errors[0] != nil {
					return fmt.Errorf("enqueue answered %v", f.Response())
				}
				return nil
			})
		})
	}
}

// BenchmarkAccept measures async calls accepted per second over HTTP with
// 64 clients spread evenly over the three servers: two thirds of the
// requests reach a follower, which forwards them to the leader.
func BenchmarkAccept(b *testing.B) {
	c := clusterForEnqueue(b)
	const clients = 64
	b.Run(fmt.Sprintf("spread/clients=%d", clients), func(b *testing.B) {
		hc := httpClient(clients)
		cls := make([]*api.Client, len(c.servers))
		for i, s := range c.servers {
			cls[i] = apiClient(b, s.HTTPAddr(), hc)
		}
		runClients(b, clients, "calls", func(w, _ int) error {
			_, err := cls[w%len(cls)].Calls().Call(context.Background(), benchFunction, bytes.NewReader(stdin32), nil)
			return err
		})
	})
}
