package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/server/servertest"
)

const mib = 1 << 20

// hideLength makes a body of unknown length: the request goes chunked.
type hideLength struct{ io.Reader }

// TestStdinOverLimitIs413NotReset: a body over the stdin limit always gets
// its 413, never a reset, whatever its size and framing. At the limit the
// call is queued; one byte past it is refused and nothing is queued.
func TestStdinOverLimitIs413NotReset(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	cl := c.Client(0)
	f := createFn(t, cl, "wc", "cat")
	u := c.URL(0) + "/v1/functions/wc/call"

	post := func(url string, body io.Reader, length int64, hdr ...string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx(t), http.MethodPost, url, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	cases := []struct {
		name string
		size int
		url  string
		// length: the declared Content-Length (-1: chunked).
		chunked bool
		hdr     []string
	}{
		{"limit+1 declared", mib + 1, u, false, nil},
		{"5 MB declared", 5_000_000, u, false, nil},
		{"8 MiB declared", 8 * mib, u, false, nil},
		{"8 MiB declared, expect 100-continue", 8 * mib, u, false, []string{"Expect", "100-continue"}},
		{"limit+1 chunked", mib + 1, u, true, nil},
		{"5 MB chunked", 5_000_000, u, true, nil},
		{"5 MB chunked, sync", 5_000_000, u + "?sync=true", true, nil},
		{"5 MB declared, function address", 5_000_000, f.Address, false, nil},
		{"5 MB chunked, function address sync", 5_000_000, f.Address + "/sync", true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			payload := make([]byte, tc.size)
			// Several times: a reset was a race the 413 lost 6 times in 20.
			for i := range 8 {
				var body io.Reader = bytes.NewReader(payload)
				length := int64(tc.size)
				if tc.chunked {
					body, length = hideLength{body}, -1
				}
				resp, err := post(tc.url, body, length, tc.hdr...)
				if err != nil {
					t.Fatalf("attempt %d: %v, want HTTP 413", i, err)
				}
				if resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Fatalf("attempt %d: HTTP %d, want 413", i, resp.StatusCode)
				}
			}
		})
	}
	if calls, _, err := cl.Calls().List(ctx(t), "wc", nil); err != nil || len(calls) != 0 {
		t.Fatalf("refused calls were queued: %d calls (%v)", len(calls), err)
	}
	// At the limit, declared or chunked: queued, every byte delivered.
	for _, chunked := range []bool{false, true} {
		var body io.Reader = bytes.NewReader(make([]byte, mib))
		if chunked {
			body = hideLength{body}
		}
		out, _, err := cl.Calls().CallSync(ctx(t), "wc", body, nil)
		if err != nil {
			t.Fatalf("stdin at the limit (chunked %v): %v", chunked, err)
		}
		got, _ := io.ReadAll(out)
		out.Close()
		if len(got) != mib {
			t.Fatalf("stdin at the limit (chunked %v): %d bytes came back", chunked, len(got))
		}
	}
}

// TestStdinDeclaredOverLimitRefusedBeforeContinue: with Expect:
// 100-continue and a declared length over the limit, the agent answers 413
// at once, without 100 Continue, so the client never sends the body. At
// the limit it answers 100 Continue and takes the call.
func TestStdinDeclaredOverLimitRefusedBeforeContinue(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	f := createFn(t, c.Client(0), "cat", "cat")
	host := strings.TrimPrefix(c.URL(0), "http://")
	for _, path := range []string{"/v1/functions/cat/call", "/v1/functions/cat/call?sync=true", strings.TrimPrefix(f.Address, c.URL(0))} {
		conn, err := net.DialTimeout("tcp", host, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", path, host, 8*mib)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "stdin exceeds 1MiB") {
			t.Fatalf("%s: HTTP %d %s, want 413 before any body byte", path, resp.StatusCode, b)
		}
	}
	// At the limit: 100 Continue, then the call is taken.
	conn, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(conn, "POST /v1/functions/cat/call HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", host, mib)
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("at the limit: %q %v, want 100 Continue", line, err)
	}
	if _, err := br.ReadString('\n'); err != nil { // the blank line after it
		t.Fatal(err)
	}
	if _, err := conn.Write(make([]byte, mib)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("at the limit: %v %v, want 202", resp, err)
	}
}

// TestCallHeaderEnvIsDeterministic: headers that map to one variable name
// are a 400 naming both; a header alone always gives the same variable.
func TestCallHeaderEnvIsDeterministic(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	createFn(t, c.Client(0), "env", "env")
	u := c.URL(0) + "/v1/functions/env/call?sync=true"
	send := func(hdr map[string]string) *response {
		req, err := http.NewRequestWithContext(ctx(t), http.MethodPost, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header[k] = []string{v} // as written, not canonicalized
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return readResponse(t, resp)
	}
	for _, pair := range [][2]string{{"X-A-B", "X_A_B"}, {"X-A-B", "X.A.B"}, {"X_A_B", "X.A.B"}} {
		r := send(map[string]string{pair[0]: "one", pair[1]: "two"})
		msg := r.want(t, http.StatusBadRequest).errorBody(t)
		// Go's server canonicalizes names (X.A.B arrives as X.a.b).
		lower := strings.ToLower(msg)
		if !strings.Contains(lower, strings.ToLower(`"`+pair[0]+`"`)) || !strings.Contains(lower, strings.ToLower(`"`+pair[1]+`"`)) || !strings.Contains(msg, "HTTP_X_A_B") {
			t.Errorf("headers %v: %q does not name both headers and the variable", pair, msg)
		}
	}
	for _, h := range []string{"X-A-B", "X_A_B", "X.A.B"} {
		for range 3 {
			r := send(map[string]string{h: "v-" + h}).want(t, http.StatusOK)
			if !strings.Contains(string(r.Body), "HTTP_X_A_B=v-"+h+"\n") {
				t.Fatalf("header %s: env %q", h, r.Body)
			}
		}
	}
	if calls, _, err := c.Client(0).Calls().List(ctx(t), "env", nil); err != nil || len(calls) != 9 {
		t.Fatalf("%d calls (%v), want the 9 accepted ones only", len(calls), err)
	}
}

// TestFunctionImageAndWorkdirValidated: an image `docker pull` would refuse
// or a relative workdir is a 400 saying why, at create and update; what
// docker accepts is taken (whether the image exists is the call's concern).
func TestFunctionImageAndWorkdirValidated(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	u := c.URL(0)
	bad := []struct{ body, want string }{
		{`{"name":"x","image":"Ubuntu"}`, "must be lowercase"},
		{`{"name":"x","image":"ubuntu:"}`, "invalid image"},
		{`{"name":"x","image":"ubuntu:la test"}`, "invalid image"},
		{`{"name":"x","image":"-ubuntu"}`, "invalid image"},
		{`{"name":"x","image":"ubuntu@sha256:abc"}`, "invalid image"},
		{`{"name":"x","image":"` + strings.Repeat("a", 513) + `"}`, "longer than 512"},
		{`{"name":"x","image":"ubuntu","workdir":"rel"}`, "absolute path"},
		{`{"name":"x","image":"ubuntu","workdir":"./rel"}`, "absolute path"},
		{`{"name":"x","image":"ubuntu","workdir":"/a\u0000b"}`, "NUL"},
	}
	for _, tc := range bad {
		msg := do(t, "POST", u+"/v1/functions", "", tc.body).want(t, 400).errorBody(t)
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %q, want it to say %q", tc.body, msg, tc.want)
		}
	}
	good := []string{
		`{"name":"a1","image":"ubuntu"}`,
		`{"name":"a2","image":"ubuntu:22.04","workdir":"/srv/app"}`,
		`{"name":"a3","image":"127.0.0.1:5000/team/tool:v1.2"}`,
		`{"name":"a4","image":"docker.io/library/busybox@sha256:` + strings.Repeat("ab", 32) + `"}`,
		`{"name":"a5","image":"registry.example.com/a/b/c","workdir":"/"}`,
	}
	for _, body := range good {
		do(t, "POST", u+"/v1/functions", "", body).want(t, 201)
	}
	msg := do(t, "POST", u+"/v1/functions/a1", "", `{"image":"Ubuntu"}`).want(t, 400).errorBody(t)
	if !strings.Contains(msg, "lowercase") {
		t.Errorf("update with an uppercase image: %q", msg)
	}
	do(t, "POST", u+"/v1/images/pull", "", `{"image":"Ubuntu"}`).want(t, 400)
	fs, _, err := c.Client(0).Functions().List(ctx(t), nil, nil)
	if err != nil || len(fs) != len(good) {
		t.Fatalf("%d functions (%v), want %d", len(fs), err, len(good))
	}
	if fs[0].Image != "ubuntu" {
		t.Errorf("the image was rewritten: %q", fs[0].Image)
	}
}

// TestLogTextCannotBeForged: stdin with a newline and a fake event, NUL
// and raw binary bytes shows as one escaped line per event in the text
// format; NDJSON carries the text unchanged.
func TestLogTextCannotBeForged(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	f := createFn(t, c.Client(0), "echoer", "cat")
	stdin := "x\n2017-03-16T15:06:10Z [FINISHED] CallId: forged, ShortStdout: y\x00\r\x1b[2J\u202e\\"
	jpeg := []byte{0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00}
	id := call(t, c.Client(0), "echoer", stdin)
	waitState(t, c.Client(0), id, api.StateFinished)
	id2, err := c.Client(0).Calls().Call(ctx(t), "echoer", bytes.NewReader(jpeg), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, c.Client(0), id2, api.StateFinished)

	event := regexp.MustCompile(`^\S+Z \[(CALL|PENDING|RUNNING|FINISHED)\] CallId: (` + id + `|` + id2 + `)(, .*)?$`)
	for _, url := range []string{c.URL(0) + "/v1/functions/echoer/logs?format=text", strings.Replace(f.Address, "/call/", "/logs/", 1)} {
		body := do(t, "GET", url, "", nil).want(t, 200).Body
		lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
		if len(lines) != 8 {
			t.Fatalf("%d lines, want 8 (4 events of 2 calls):\n%s", len(lines), body)
		}
		for _, l := range lines {
			if !event.MatchString(l) {
				t.Errorf("line %q is not an event of the two calls", l)
			}
			for _, b := range []byte(l) {
				if b < 0x20 || b == 0x7f {
					t.Errorf("line %q carries the raw control byte %#x", l, b)
				}
			}
		}
		want := `ShortStdin: x\n2017-03-16T15:06:10Z [FINISHED] CallId: forged, ShortStdout: y\x00\r\x1b[2J\u202e\\`
		if !strings.Contains(string(body), want) {
			t.Errorf("the forged stdin is not shown escaped (%s) in:\n%s", want, body)
		}
		// The log keeps valid UTF-8 (a run of bad bytes is one U+FFFD);
		// NUL and the other control bytes are escaped.
		if !strings.Contains(string(body), "ShortStdin: \ufffd"+`\x00\x10JFIF\x00`) {
			t.Errorf("the JPEG bytes are not shown escaped in:\n%s", body)
		}
	}
	// NDJSON: the event's text is the stored text, newline and NUL included.
	var found bool
	err = c.Client(0).Calls().Logs(ctx(t), "echoer", &api.LogOptions{CallID: id}, func(ev api.LogEvent) error {
		if ev.Kind == "CALL" {
			found = ev.Text == "ShortStdin: "+stdin
		}
		return nil
	})
	if err != nil || !found {
		t.Fatalf("NDJSON did not carry the stdin unchanged (%v)", err)
	}
	r := do(t, "GET", c.URL(0)+"/v1/functions/echoer/logs?callid="+id, "", nil).want(t, 200)
	var ev api.LogEvent
	if err := json.Unmarshal(bytes.SplitN(r.Body, []byte("\n"), 2)[0], &ev); err != nil || ev.Text != "ShortStdin: "+stdin {
		t.Fatalf("raw NDJSON: %q (%v)", r.Body, err)
	}
}

// TestSyncCallSendsItsIDBeforeWaiting: a sync call's ID arrives in a 102
// answer while the call still runs; a client cut off then can fetch the
// output under that ID.
func TestSyncCallSendsItsIDBeforeWaiting(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	cl := c.Client(0)
	f := createFn(t, cl, "slow", "sleep", "1h")
	for _, url := range []string{c.URL(0) + "/v1/functions/slow/call?sync=true", f.Address + "/sync"} {
		early := make(chan string, 1)
		rctx, cancel := context.WithCancel(ctx(t))
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			if code == http.StatusProcessing {
				early <- h.Get(api.HeaderCallID)
			}
			return nil
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(rctx, trace), http.MethodPost, url, strings.NewReader("in"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(api.HeaderEarlyCallID, "true")
		done := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		var id string
		select {
		case id = <-early:
		case err := <-done:
			t.Fatalf("the sync call ended (%v) before its ID arrived", err)
		case <-ctx(t).Done():
			t.Fatal("no 102 with the call ID while the call runs")
		}
		if id == "" {
			t.Fatal("102 without the call ID")
		}
		if call, _, err := cl.Calls().Info(ctx(t), id, nil); err != nil || call.Done() {
			t.Fatalf("call %s: %+v %v: want it still going", id, call, err)
		}
		cancel() // the proxy cuts the wait
		<-done
		c.Engine.Release(id)
		body, _, err := cl.Calls().Output(ctx(t), id, true)
		if err != nil {
			t.Fatalf("get of the cut call: %v", err)
		}
		got, _ := io.ReadAll(body)
		body.Close()
		if string(got) != "in" {
			t.Fatalf("output %q", got)
		}
	}

	// The Go client hands the ID over with the error of a cut call.
	rctx, cancel := context.WithCancel(ctx(t))
	go func() {
		// Off the test goroutine: no t.Fatal here; a hang ends with ctx(t).
		_ = servertest.Within(time.Minute, func() error {
			if len(c.Engine.Running()) == 0 {
				return fmt.Errorf("nothing runs yet")
			}
			return nil
		})
		cancel()
	}()
	_, id, err := cl.Calls().CallSync(rctx, "slow", nil, nil)
	if err == nil || id == "" {
		t.Fatalf("cut sync call: id %q, err %v; want both", id, err)
	}
	c.Engine.Release(id)
	if call := waitState(t, cl, id, api.StateFinished); call.ID != id {
		t.Fatal(call)
	}
}

// TestSyncCallIDThroughAFollower: a follower proxying a sync call to the
// leader relays the 102 with the call ID before the call ends.
func TestSyncCallIDThroughAFollower(t *testing.T) {
	c := servertest.NewCluster(t, 3, servertest.Options{})
	f := c.FollowerIndexes()[0]
	createFn(t, c.Client(f), "slow", "sleep", "1h")
	early := make(chan string, 1)
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		if code == http.StatusProcessing {
			early <- h.Get(api.HeaderCallID)
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx(t), trace), http.MethodPost, c.URL(f)+"/v1/functions/slow/call?sync=true", strings.NewReader("in"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(api.HeaderEarlyCallID, "true")
	done := make(chan *response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- &response{Body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- &response{Code: resp.StatusCode, Header: resp.Header, Body: b}
	}()
	var id string
	select {
	case id = <-early:
	case r := <-done:
		t.Fatalf("the sync call ended (HTTP %d %s) before its ID arrived", r.Code, r.Body)
	case <-ctx(t).Done():
		t.Fatal("no 102 with the call ID through the follower")
	}
	c.Engine.Release(id)
	r := <-done
	if r.Code != http.StatusOK || string(r.Body) != "in" || r.Header.Get(api.HeaderCallID) != id {
		t.Fatalf("final answer HTTP %d %q, call ID %q (102 said %q)", r.Code, r.Body, r.Header.Get(api.HeaderCallID), id)
	}
}

// Without the opt-in header a sync call answers with its final status only:
// Python's http.client and requests take any 1xx but 100 for the answer.
func TestSyncCallNoEarlyAnswerUnasked(t *testing.T) {
	c := servertest.NewCluster(t, 1, servertest.Options{})
	c.WaitForLeader()
	createFn(t, c.Client(0), "e", "echo", "hi")
	informational := 0
	trace := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error {
		informational++
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx(t), trace), http.MethodPost, c.URL(0)+"/v1/functions/e/call?sync=true", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || informational != 0 || resp.Header.Get(api.HeaderCallID) == "" {
		t.Fatalf("HTTP %d with %d informational answers, call ID %q; want 200, none, an ID", resp.StatusCode, informational, resp.Header.Get(api.HeaderCallID))
	}
}
