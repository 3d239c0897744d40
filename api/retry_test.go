package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestClientRidesOutAnElection: a 503 with Retry-After (the agent knew no
// leader and did nothing) is sent again, body included, until it passes;
// a 503 without it (the outcome is unknown) is not.
func TestClientRidesOutAnElection(t *testing.T) {
	var n atomic.Int32
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if r.URL.Path == "/v1/functions/unknown/call" {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"no cluster leader: leadership lost while committing"}`)
			return
		}
		if n.Add(1) <= 2 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"no cluster leader; retry in a moment"}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"call_id":"abc"}`)
	}))
	defer srv.Close()
	c, err := NewClient(&Config{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := c.Calls().Call(ctx, "f", strings.NewReader("payload"), nil)
	if err != nil || id != "abc" {
		t.Fatalf("call through an election: %q %v", id, err)
	}
	if len(bodies) != 3 || bodies[0] != "payload" || bodies[2] != "payload" {
		t.Fatalf("bodies sent: %q, want the payload 3 times", bodies)
	}
	bodies = nil
	if _, err := c.Calls().Call(ctx, "unknown", strings.NewReader("x"), nil); StatusCode(err) != 503 || len(bodies) != 1 {
		t.Fatalf("a 503 without Retry-After: %v after %d requests, want one request", err, len(bodies))
	}
	// No retries when told so.
	n.Store(0)
	c, _ = NewClient(&Config{Address: srv.URL, LeaderWait: -1})
	if _, err := c.Calls().Call(ctx, "f", strings.NewReader("payload"), nil); StatusCode(err) != 503 {
		t.Fatalf("LeaderWait -1: %v, want the 503", err)
	}
}

func TestEscapeLogText(t *testing.T) {
	for in, want := range map[string]string{
		"HelloWorld":                  "HelloWorld",
		"HelloWorld\n":                `HelloWorld\n`,
		"a\r\nb\tc":                   `a\r\nb\tc`,
		"nul\x00esc\x1b[2J del\x7f":   `nul\x00esc\x1b[2J del\x7f`,
		`back\slash`:                  `back\\slash`,
		"bad \xff\xfe utf8":           `bad \xff\xfe utf8`,
		"bidi \u202e and \u0085 next": `bidi \u202e and \u0085 next`,
		`json {"a": "é ü 日本"}`:        `json {"a": "é ü 日本"}`,
		"replacement \ufffd stays":    "replacement \ufffd stays",
	} {
		if got := EscapeLogText(in); got != want {
			t.Errorf("EscapeLogText(%q) = %q, want %q", in, got, want)
		}
	}
	ev := LogEvent{Time: time.Date(2017, 3, 16, 15, 6, 10, 0, time.UTC), Kind: "FINISHED", CallID: "id",
		Text: "ShortStdout: x\n2017-03-16T15:06:10Z [FINISHED] CallId: forged, ShortStderr: "}
	if got := ev.Line(); strings.Count(got, "\n") != 0 || got != `2017-03-16T15:06:10Z [FINISHED] CallId: id, ShortStdout: x\n2017-03-16T15:06:10Z [FINISHED] CallId: forged, ShortStderr: ` {
		t.Errorf("Line: %q", got)
	}
}
