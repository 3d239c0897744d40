package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"image/jpeg"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

const callTimeout = 2 * time.Minute

// logLine matches one event line of the seed's log format.
var logLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[(CALL|PENDING|RUNNING|FINISHED|FAILED|CANCELED)\] CallId: ([0-9a-f-]{36})(, .*)?$`)

// checkSeedLogs checks the log text of one helloworld call: the four
// events of the seed, in order, in its line format.
func checkSeedLogs(t *testing.T, text, id, stdin string) {
	t.Helper()
	want := []*regexp.Regexp{
		regexp.MustCompile(`^\S+ \[CALL\] CallId: ` + id + `, ShortStdin: ` + regexp.QuoteMeta(api.EscapeLogText(stdin)) + `\n`),
		regexp.MustCompile(`^\S+ \[PENDING\] CallId: ` + id + `\n`),
		regexp.MustCompile(`^\S+ \[RUNNING\] CallId: ` + id + `\n`),
		// One event, one line: stdout's newline shows escaped.
		regexp.MustCompile(`^\S+ \[FINISHED\] CallId: ` + id + `, ShortStdout: HelloWorld\\n, ShortStderr: \n`),
	}
	rest := text
	for i, re := range want {
		loc := re.FindStringIndex(rest)
		if loc == nil {
			t.Fatalf("logs: event %d (%s) missing or out of order in:\n%s", i, re, text)
		}
		rest = rest[loc[1]:]
	}
	if rest != "" {
		t.Fatalf("logs: unexpected lines after FINISHED: %q (all:\n%s)", rest, text)
	}
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if strings.HasPrefix(l, ", ShortStderr:") {
			continue // the FINISHED event's stdout ends with a newline
		}
		if !logLine.MatchString(l) {
			t.Errorf("log line %q is not in the seed's format", l)
		}
	}
}

// TestSeedWalkthroughAPI runs the seed walkthrough over HTTP with the Go
// client, then the per-function address face of the same function.
func TestSeedWalkthroughAPI(t *testing.T) {
	t.Parallel()
	harness.Docker(t)
	a := harness.StartAgent(t, harness.AgentOptions{Dev: true})
	c := a.Client()
	ctx := context.Background()
	name := harness.Name("helloworld")

	if err := c.Images().Pull(ctx, "ubuntu"); err != nil {
		t.Fatalf("pull ubuntu: %v", err)
	}
	fn, err := c.Functions().Create(ctx, &api.FunctionSpec{Name: name, Image: "ubuntu", Command: []string{"echo", "HelloWorld"}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	id, err := c.Calls().Call(ctx, name, nil, nil)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	body, state, err := c.Calls().Output(ctx, id, true)
	if err != nil {
		t.Fatalf("get --wait: %v", err)
	}
	out := readAll(t, body)
	if out != "HelloWorld\n" || state != api.StateFinished {
		t.Fatalf("get --wait: %q (state %s), want HelloWorld", out, state)
	}

	// Logs, as NDJSON events and as text lines.
	var evs []api.LogEvent
	if err := c.Calls().Logs(ctx, name, &api.LogOptions{CallID: id}, func(ev api.LogEvent) error {
		evs = append(evs, ev)
		return nil
	}); err != nil {
		t.Fatalf("logs: %v", err)
	}
	var text strings.Builder
	for _, ev := range evs {
		text.WriteString(ev.Line() + "\n")
	}
	checkSeedLogs(t, text.String(), id, "")

	// The per-function address: <agent>/call/<name>/<secret>.
	u, err := url.Parse(fn.Address)
	if err != nil || !strings.HasPrefix(u.Path, "/call/"+name+"/") {
		t.Fatalf("function address %q", fn.Address)
	}
	secret := strings.TrimPrefix(u.Path, "/call/"+name+"/")
	base := a.URL()
	r := harness.Do(t, "POST", base+"/call/"+name+"/"+secret, []byte("ignored"))
	var acc api.CallAccepted
	if r.Code != 202 || json.Unmarshal(r.Body, &acc) != nil || acc.CallID == "" {
		t.Fatalf("POST /call: %d %s", r.Code, r.Body)
	}
	r = harness.Do(t, "GET", base+"/output/"+name+"/"+secret+"/"+acc.CallID+"/wait", nil)
	if r.Code != 200 || string(r.Body) != "HelloWorld\n" {
		t.Fatalf("GET /output/.../wait: %d %q", r.Code, r.Body)
	}
	r = harness.Do(t, "GET", base+"/output/"+name+"/"+secret+"/"+acc.CallID, nil)
	if r.Code != 200 || string(r.Body) != "HelloWorld\n" {
		t.Fatalf("GET /output: %d %q", r.Code, r.Body)
	}
	r = harness.Do(t, "POST", base+"/call/"+name+"/"+secret+"/sync", nil)
	if r.Code != 200 || string(r.Body) != "HelloWorld\n" || r.Header.Get(api.HeaderCallID) == "" {
		t.Fatalf("POST /call/.../sync: %d %q %v", r.Code, r.Body, r.Header)
	}
	r = harness.Do(t, "GET", base+"/logs/"+name+"/"+secret+"?callid="+acc.CallID, nil)
	if r.Code != 200 {
		t.Fatalf("GET /logs: %d %s", r.Code, r.Body)
	}
	checkSeedLogs(t, string(r.Body), acc.CallID, "ignored")
	r = harness.Do(t, "GET", base+"/logs/"+name+"/"+secret, nil)
	for _, cid := range []string{id, acc.CallID} {
		if !strings.Contains(string(r.Body), "[FINISHED] CallId: "+cid) {
			t.Errorf("GET /logs (all) lacks the FINISHED event of %s:\n%s", cid, r.Body)
		}
	}
	r = harness.Do(t, "GET", base+"/status/"+name+"/"+secret, nil)
	var st api.FunctionStatus
	if r.Code != 200 || json.Unmarshal(r.Body, &st) != nil || st.Finished != 3 || st.Pending+st.Running+st.Failed != 0 {
		t.Fatalf("GET /status: %d %s", r.Code, r.Body)
	}
	// A wrong secret or name is a plain 404 on every route.
	for _, p := range []string{
		"/output/" + name + "/0000/" + acc.CallID, "/logs/" + name + "/0000", "/status/" + name + "/0000",
		"/status/other-" + name + "/" + secret,
	} {
		if r := harness.Do(t, "GET", base+p, nil); r.Code != 404 {
			t.Errorf("GET %s with a wrong secret: %d %s", p, r.Code, r.Body)
		}
	}
	if r := harness.Do(t, "POST", base+"/call/"+name+"/0000", nil); r.Code != 404 {
		t.Errorf("POST /call with a wrong secret: %d %s", r.Code, r.Body)
	}

	if err := c.Functions().Delete(ctx, name); err != nil {
		t.Fatalf("rm: %v", err)
	}
	if _, _, err := c.Functions().Info(ctx, name, nil); api.StatusCode(err) != 404 {
		t.Fatalf("info after rm: %v", err)
	}
}

var callIDOut = regexp.MustCompile(`^CallId: ([0-9a-f-]{36})\n$`)

// TestSeedWalkthroughCLI runs the seed walkthrough verbatim with the
// hyper binary, the resize example through sh -c, and a binary round trip.
func TestSeedWalkthroughCLI(t *testing.T) {
	t.Parallel()
	harness.Docker(t)
	a := harness.StartAgent(t, harness.AgentOptions{Dev: true})
	hello := harness.Name("helloworld")

	// 1. $ hyper pull ubuntu
	harness.Hyper(t, a, nil, "pull", "ubuntu").Must(t, "pull ubuntu")
	// 2. $ hyper func create --name helloworld ubuntu echo HelloWorld
	r := harness.Hyper(t, a, nil, "func", "create", "--name", hello, "ubuntu", "echo", "HelloWorld").Must(t, "create")
	if !regexp.MustCompile(`^` + hello + ` is created with the address of http://` + regexp.QuoteMeta(a.HTTPAddr) + `/call/` + hello + `/\S+\n$`).Match(r.Stdout) {
		t.Fatalf("create printed %q", r.Stdout)
	}
	// 3. $ hyper func call helloworld
	r = harness.Hyper(t, a, nil, "func", "call", hello).Must(t, "call")
	m := callIDOut.FindSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("call printed %q", r.Stdout)
	}
	id := string(m[1])
	// 4. $ hyper func logs helloworld (the call may not have ended yet)
	r = harness.Hyper(t, a, nil, "func", "logs", hello).Must(t, "logs")
	if !strings.Contains(string(r.Stdout), "[CALL] CallId: "+id+", ShortStdin: \n") {
		t.Fatalf("logs right after the call:\n%s", r.Stdout)
	}
	// 5. $ hyper func get --wait <id>
	r = harness.Hyper(t, a, nil, "func", "get", "--wait", id).Must(t, "get --wait")
	if string(r.Stdout) != "HelloWorld\n" {
		t.Fatalf("get --wait printed %s", r)
	}
	r = harness.Hyper(t, a, nil, "func", "logs", hello).Must(t, "logs")
	checkSeedLogs(t, string(r.Stdout), id, "")
	// 6. $ hyper func rm helloworld
	r = harness.Hyper(t, a, nil, "func", "rm", hello).Must(t, "rm")
	if string(r.Stdout) != hello+"\n" {
		t.Fatalf("rm printed %s", r)
	}
	if r = harness.Hyper(t, a, nil, "func", "inspect", hello); r.Code == 0 {
		t.Fatalf("inspect after rm: %s", r)
	}

	// The resize example, through a shell exactly as the seed writes it.
	resizer := harness.Name("resizer")
	harness.Hyper(t, a, nil, "pull", "v4tech/imagemagick").Must(t, "pull v4tech/imagemagick")
	r = harness.Hyper(t, a, nil, "func", "create", "--name", resizer, "v4tech/imagemagick", "convert", "-", "-resize", "50%", "fd:1").Must(t, "create resizer")
	if !strings.HasPrefix(string(r.Stdout), resizer+" is created with the address of ") {
		t.Fatalf("create resizer printed %q", r.Stdout)
	}
	dir := t.TempDir()
	picture := harness.GradientJPEG(t, 800, 600)
	if err := os.WriteFile(filepath.Join(dir, "picture.jpg"), picture, 0o644); err != nil {
		t.Fatal(err)
	}
	harness.Sh(t, a, dir, "cat picture.jpg | hyper func call --sync "+resizer+" > picture_small.jpg").Must(t, "resize")
	small, err := os.ReadFile(filepath.Join(dir, "picture_small.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(small))
	if err != nil {
		t.Fatalf("picture_small.jpg (%d bytes) is no JPEG: %v", len(small), err)
	}
	if b := img.Bounds(); b.Dx() != 400 || b.Dy() != 300 {
		t.Fatalf("picture_small.jpg is %dx%d, want 400x300", b.Dx(), b.Dy())
	}
	if len(small) >= len(picture) {
		t.Errorf("small picture %d bytes, original %d", len(small), len(picture))
	}

	// Binary stdin and stdout: 1 MiB of random bytes through cat.
	echo := harness.Name("cat")
	harness.Hyper(t, a, nil, "func", "create", "--name", echo, "ubuntu", "cat").Must(t, "create cat")
	in := make([]byte, 1<<20)
	if _, err := rand.Read(in); err != nil {
		t.Fatal(err)
	}
	r = harness.Hyper(t, a, in, "func", "call", "--sync", echo).Must(t, "call --sync cat")
	if sha256.Sum256(r.Stdout) != sha256.Sum256(in) {
		t.Fatalf("cat returned %d bytes that differ from the %d sent", len(r.Stdout), len(in))
	}
	if len(r.Stderr) != 0 {
		t.Errorf("call --sync wrote to stderr: %q", r.Stderr)
	}
}

func readAll(t *testing.T, rc interface {
	Read([]byte) (int, error)
	Close() error
}) string {
	t.Helper()
	if rc == nil {
		t.Fatal("no body")
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
