package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
)

// opKind is what a client did, for the linearizability history.
type opKind int

const (
	opEnqueue opKind = iota // submit a call; acknowledged with its ID
	opRead                  // consistent read of a call's state
)

// histOp is one completed client operation on one call, with client-side
// invoke and return times (nanoseconds since the run began).
type histOp struct {
	client int
	kind   opKind
	id     string
	state  string // opRead: the state seen; "" when the call was not found
	call   int64
	ret    int64
	node   string
}

// callRec is an acknowledged call.
type callRec struct {
	id    string
	input []byte
	sum   [32]byte
	node  string
}

// unknownRec is a submission whose answer never came or was an error that
// does not prove nothing was queued: it may or may not exist.
type unknownRec struct {
	input []byte
	sum   [32]byte
	err   string
}

// history collects everything the clients saw.
type history struct {
	start time.Time

	mu       sync.Mutex
	ops      []histOp
	calls    map[string]*callRec
	ids      []string // acknowledged IDs in ack order
	unknown  []unknownRec
	refused  map[string]int // definite refusals (4xx but 429/503... see classify) by status
	readErrs int
}

func newHistory() *history {
	return &history{start: time.Now(), calls: map[string]*callRec{}, refused: map[string]int{}}
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op histOp) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func (h *history) ack(rec *callRec) {
	h.mu.Lock()
	h.calls[rec.id] = rec
	h.ids = append(h.ids, rec.id)
	h.mu.Unlock()
}

// pickID picks a call to read: mostly a recent one (likely still moving).
func (h *history) pickID(r *rand.Rand) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ids) == 0 {
		return ""
	}
	if r.IntN(10) < 7 {
		lo := max(0, len(h.ids)-100)
		return h.ids[lo+r.IntN(len(h.ids)-lo)]
	}
	return h.ids[r.IntN(len(h.ids))]
}

// loadConfig bounds the load.
type loadConfig struct {
	clients  int
	rate     float64 // submissions per second, all clients together
	maxCalls int     // stop submitting after this many submissions
	function string
	seed     uint64
}

type loadStats struct {
	submitted, acked, unknown, refused atomic.Int64
	reads, readErrors                  atomic.Int64
}

// runLoad submits calls and reads states until ctx ends or maxCalls were
// submitted. Each client picks a random node per request.
func runLoad(ctx context.Context, c *cluster, h *history, cfg loadConfig, st *loadStats) {
	tokens := make(chan struct{}, cfg.clients)
	go func() {
		t := time.NewTicker(time.Duration(float64(time.Second) / cfg.rate))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				close(tokens)
				return
			case <-t.C:
				select {
				case tokens <- struct{}{}:
				default:
				}
			}
		}
	}()
	var wg sync.WaitGroup
	var seq atomic.Int64
	for w := 0; w < cfg.clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(cfg.seed, uint64(w)+1))
			for range tokens {
				n := seq.Add(1)
				if cfg.maxCalls > 0 && n > int64(cfg.maxCalls) {
					return
				}
				submit(ctx, c, h, cfg, st, w, n, r)
				for i := 0; i < 2; i++ {
					readState(ctx, c, h, st, w, r)
				}
			}
		}(w)
	}
	wg.Wait()
}

func submit(ctx context.Context, c *cluster, h *history, cfg loadConfig, st *loadStats, w int, n int64, r *rand.Rand) {
	// A unique input: who, which, and random bytes of random length (the
	// output must come back byte for byte).
	pad := make([]byte, 8+r.IntN(512))
	for i := range pad {
		pad[i] = byte(r.UintN(256))
	}
	input := []byte(fmt.Sprintf("chaos %d/%d %s\n", w, n, hex.EncodeToString(pad)))
	nd := c.nodes[r.IntN(len(c.nodes))]
	cl := nd.Client()
	st.submitted.Add(1)
	rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	call := h.now()
	id, err := cl.Calls().Call(rctx, cfg.function, bytes.NewReader(input), nil)
	ret := h.now()
	if err != nil {
		if definitelyRefused(err) {
			st.refused.Add(1)
			h.mu.Lock()
			h.refused[fmt.Sprint(api.StatusCode(err))]++
			h.mu.Unlock()
			return
		}
		st.unknown.Add(1)
		h.mu.Lock()
		h.unknown = append(h.unknown, unknownRec{input: input, sum: sha256.Sum256(input), err: err.Error()})
		h.mu.Unlock()
		return
	}
	st.acked.Add(1)
	h.ack(&callRec{id: id, input: input, sum: sha256.Sum256(input), node: nd.name})
	h.add(histOp{client: w, kind: opEnqueue, id: id, call: call, ret: ret, node: nd.name})
}

// definitelyRefused: answers that prove nothing was queued. A 4xx other
// than a timeout is a refusal before Raft (429 is the queue bound); a 503
// from the leader check in front of every write (no leader known, or a
// forwarded request reaching a server that no longer leads) was never
// applied. Every other 5xx and every transport error is unknown: the
// entry may have committed after the answer was lost.
func definitelyRefused(err error) bool {
	code := api.StatusCode(err)
	if code == 503 {
		var e *api.Error
		if errors.As(err, &e) {
			return strings.Contains(e.Message, "knows no leader") || strings.Contains(e.Message, "is not the leader any more")
		}
	}
	return code >= 400 && code < 500 && code != 408
}

func readState(ctx context.Context, c *cluster, h *history, st *loadStats, w int, r *rand.Rand) {
	if ctx.Err() != nil {
		return
	}
	id := h.pickID(r)
	if id == "" {
		return
	}
	nd := c.nodes[r.IntN(len(c.nodes))]
	// Long enough to outlast a pause: a read queued on a stopped server is
	// answered when it resumes, which is when a stale answer would show.
	rctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
	defer cancel()
	call := h.now()
	info, _, err := nd.Client().Calls().Info(rctx, id, nil)
	ret := h.now()
	state := ""
	switch {
	case err == nil:
		state = info.State
	case api.StatusCode(err) == 404:
		// Not found after it was acknowledged: recorded, the model rejects it.
	default:
		// No answer: a read changes nothing, so leaving it out is sound.
		st.readErrors.Add(1)
		return
	}
	st.reads.Add(1)
	h.add(histOp{client: w, kind: opRead, id: id, state: state, call: call, ret: ret, node: nd.name})
}
