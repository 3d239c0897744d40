package cli_test

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hyperfunc/hyperfunc/api"
)

var callIDLine = regexp.MustCompile(`^CallId: (\S+)\n$`)

// TestSeedWalkthrough runs the walkthrough of seed/hyper-func.txt verbatim.
func TestSeedWalkthrough(t *testing.T) {
	f := newFakeAPI(t)

	// 1. $ hyper pull ubuntu
	f.run(t, nil, nil, "pull", "ubuntu").must(t)
	if !slices.Equal(f.pulled, []string{"ubuntu"}) {
		t.Fatalf("pulled %v", f.pulled)
	}

	// 2. $ hyper func create --name helloworld ubuntu echo HelloWorld
	r := f.run(t, nil, nil, "func", "create", "--name", "helloworld", "ubuntu", "echo", "HelloWorld").must(t)
	want := "helloworld is created with the address of " + f.srv.URL + "/call/helloworld/secret1\n"
	if r.stdout != want {
		t.Fatalf("create printed %q, want %q", r.stdout, want)
	}

	// 3. $ hyper func call helloworld
	r = f.run(t, nil, nil, "func", "call", "helloworld").must(t)
	m := callIDLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("call printed %q", r.stdout)
	}
	id := m[1]

	// 4. $ hyper func logs helloworld
	r = f.run(t, nil, nil, "func", "logs", "helloworld").must(t)
	wantLogs := strings.Join([]string{
		"2017-03-16T15:06:01Z [CALL] CallId: " + id + ", ShortStdin: ",
		"2017-03-16T15:06:02Z [PENDING] CallId: " + id,
		"2017-03-16T15:06:04Z [RUNNING] CallId: " + id,
		// The seed printed stdout's newline raw, splitting the event in
		// two lines; escaped, one event stays one line.
		"2017-03-16T15:06:06Z [FINISHED] CallId: " + id + `, ShortStdout: HelloWorld\n, ShortStderr: `,
		"",
	}, "\n")
	if r.stdout != wantLogs {
		t.Fatalf("logs:\n%s\nwant:\n%s", r.stdout, wantLogs)
	}

	// 5. $ hyper func get --wait <id>
	r = f.run(t, nil, nil, "func", "get", "--wait", id).must(t)
	if r.stdout != "HelloWorld\n" || r.stderr != "" {
		t.Fatalf("get: stdout %q stderr %q", r.stdout, r.stderr)
	}

	// Tip: echo Hello | hyper func call helloworld
	r = f.run(t, strings.NewReader("Hello\n"), nil, "func", "call", "helloworld").must(t)
	id2 := callIDLine.FindStringSubmatch(r.stdout)[1]
	r = f.run(t, nil, nil, "func", "logs", "--callid", id2, "--tail", "4", "helloworld").must(t)
	if !strings.Contains(r.stdout, "[CALL] CallId: "+id2+`, ShortStdin: Hello\n`+"\n") || strings.Contains(r.stdout, id) {
		t.Fatalf("logs of the second call:\n%s", r.stdout)
	}

	// 6. $ hyper func rm helloworld
	r = f.run(t, nil, nil, "func", "rm", "helloworld").must(t)
	if r.stdout != "helloworld\n" {
		t.Fatalf("rm printed %q", r.stdout)
	}
	if len(f.fns) != 0 {
		t.Fatalf("functions left: %v", f.fns)
	}
}

// TestResizeExample runs the seed's resize example with a binary payload:
// $ cat picture.jpg | hyper func call --sync resizer > picture_small.jpg
func TestResizeExample(t *testing.T) {
	f := newFakeAPI(t)
	f.run(t, nil, nil, "pull", "v4tech/imagemagick").must(t)
	r := f.run(t, nil, nil, "func", "create", "--name", "resizer", "v4tech/imagemagick", "convert", "-", "-resize", "50%", "fd:1").must(t)
	if !strings.HasPrefix(r.stdout, "resizer is created with the address of ") {
		t.Fatalf("create printed %q", r.stdout)
	}
	if got := f.fns["resizer"].Command; !slices.Equal(got, []string{"convert", "-", "-resize", "50%", "fd:1"}) {
		t.Fatalf("command %q", got)
	}

	// Every byte value, NULs and invalid UTF-8 included; over the
	// Expect: 100-continue threshold.
	picture := make([]byte, 700<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range picture {
		picture[i] = byte(rng.UintN(256))
	}
	for i := range 256 {
		picture[i] = byte(i)
	}
	path := filepath.Join(t.TempDir(), "picture.jpg")
	if err := os.WriteFile(path, picture, 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(path) // a redirected file: not a terminal
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	r = f.run(t, in, nil, "func", "call", "--sync", "resizer").must(t)
	if sha256.Sum256([]byte(r.stdout)) != sha256.Sum256(picture) {
		t.Fatalf("output differs from input: %d bytes vs %d", len(r.stdout), len(picture))
	}
	if r.stderr != "" {
		t.Fatalf("stderr %q", r.stderr)
	}
	if got := f.callHeader.Get("Expect"); got != "100-continue" {
		t.Errorf("Expect header %q", got)
	}

	// The same through async call and get.
	in2 := bytes.NewReader(picture)
	r = f.run(t, in2, nil, "func", "call", "resizer").must(t)
	id := callIDLine.FindStringSubmatch(r.stdout)[1]
	r = f.run(t, nil, nil, "func", "get", id).must(t)
	if sha256.Sum256([]byte(r.stdout)) != sha256.Sum256(picture) {
		t.Fatal("get output differs from input")
	}
}

func TestCallHeaders(t *testing.T) {
	f := newFakeAPI(t)
	f.run(t, nil, nil, "func", "create", "--name", "api", "alpine", "cat").must(t)
	f.run(t, strings.NewReader("{}"), nil, "func", "call", "--sync", "-H", "Content-Type: application/json", "-H", "X-Trace: a:b", "api").must(t)
	if got := f.callHeader.Values("Content-Type"); !slices.Equal(got, []string{"application/json"}) {
		t.Errorf("Content-Type %q", got)
	}
	if got := f.callHeader.Get("X-Trace"); got != "a:b" {
		t.Errorf("X-Trace %q", got)
	}
	if got := f.callHeader.Get("Expect"); got != "" {
		t.Errorf("small input sent Expect %q", got)
	}
}

func TestCreateOptions(t *testing.T) {
	f := newFakeAPI(t)
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("# comment\nA=from-file\nB=b=with=equals\n\nFROM_ENV\nUNSET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.run(t, nil, map[string]string{"FROM_ENV": "yes"}, "func", "create", "--name", "job",
		"--size", "m1", "--timeout", "5m", "--env-file", envFile, "-e", "A=from-flag", "-e", "C=x,y",
		"-l", "team=web", "--label", "tier", "--entrypoint", "/bin/sh", "-w", "/app",
		"alpine", "-c", "echo hi").must(t)
	fn := f.fns["job"]
	if fn.Size != "m1" || fn.Timeout != 300 || fn.Workdir != "/app" ||
		!slices.Equal(fn.Entrypoint, []string{"/bin/sh"}) || !slices.Equal(fn.Command, []string{"-c", "echo hi"}) {
		t.Errorf("function %+v", fn)
	}
	wantEnv := map[string]string{"A": "from-flag", "B": "b=with=equals", "C": "x,y", "FROM_ENV": "yes"}
	if !mapsEqual(fn.Env, wantEnv) {
		t.Errorf("env %v, want %v", fn.Env, wantEnv)
	}
	if !mapsEqual(fn.Labels, map[string]string{"team": "web", "tier": ""}) {
		t.Errorf("labels %v", fn.Labels)
	}

	// Without --name a readable name is generated.
	r := f.run(t, nil, nil, "func", "create", "ubuntu").must(t)
	m := regexp.MustCompile(`^([a-z]+-[a-z]+) is created with the address of \S+\n$`).FindStringSubmatch(r.stdout)
	if m == nil || f.fns[m[1]] == nil {
		t.Fatalf("create without name printed %q", r.stdout)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestUpdate(t *testing.T) {
	f := newFakeAPI(t)
	f.run(t, nil, nil, "func", "create", "--name", "fn", "-e", "A=1", "ubuntu").must(t)
	r := f.run(t, nil, nil, "func", "update", "--size", "l1", "--timeout", "90", "-e", "B=2", "fn").must(t)
	if r.stdout != "fn is updated\n" {
		t.Errorf("update printed %q", r.stdout)
	}
	fn := f.fns["fn"]
	if fn.Size != "l1" || fn.Timeout != 90 || !mapsEqual(fn.Env, map[string]string{"A": "1", "B": "2"}) {
		t.Errorf("function %+v", fn)
	}
	r = f.run(t, nil, nil, "func", "update", "--refresh", "fn").must(t)
	if !regexp.MustCompile(`^fn is updated with the address of http://\S+/call/fn/secret\d+\n$`).MatchString(r.stdout) {
		t.Errorf("update --refresh printed %q", r.stdout)
	}
}

func TestListInspectStatus(t *testing.T) {
	f := newFakeAPI(t)
	f.run(t, nil, nil, "func", "create", "--name", "helloworld", "-l", "team=web", "ubuntu", "echo", "HelloWorld").must(t)
	f.run(t, nil, nil, "func", "create", "--name", "resizer", "--size", "s1", "v4tech/imagemagick", "convert", "-", "-resize", "50%", "fd:1").must(t)

	r := f.run(t, nil, nil, "func", "ls").must(t)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 3 ||
		!regexp.MustCompile(`^NAME +IMAGE +COMMAND +SIZE +CREATED$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^resizer +v4tech/imagemagick +"convert - -resize 5…" +s1 +\d+ years ago$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^helloworld +ubuntu +"echo HelloWorld" +s4 +\d+ years ago$`).MatchString(lines[2]) {
		t.Errorf("ls:\n%s", r.stdout)
	}
	r = f.run(t, nil, nil, "func", "ls", "-q", "-f", "label=team=web").must(t)
	if r.stdout != "helloworld\n" {
		t.Errorf("ls -f label=team=web: %q", r.stdout)
	}
	if f.listQuery != "label=team%3Dweb" {
		t.Errorf("list query %q", f.listQuery)
	}
	r = f.run(t, nil, nil, "func", "ls", "-q", "-f", "name=res").must(t)
	if r.stdout != "resizer\n" {
		t.Errorf("ls -f name=res: %q", r.stdout)
	}

	r = f.run(t, nil, nil, "func", "inspect", "-f", `{{.Image}} {{join .Command " "}} {{.Resources.MemoryMB}}`, "resizer").must(t)
	if r.stdout != "v4tech/imagemagick convert - -resize 50% fd:1 64\n" {
		t.Errorf("inspect -f: %q", r.stdout)
	}
	r = f.run(t, nil, nil, "func", "inspect", "helloworld").must(t)
	if !strings.HasPrefix(r.stdout, "[\n    {\n        \"name\": \"helloworld\",") {
		t.Errorf("inspect:\n%s", r.stdout)
	}

	f.run(t, nil, nil, "func", "call", "helloworld").must(t)
	r = f.run(t, nil, nil, "func", "status", "helloworld").must(t)
	want := "NAME         PENDING   RUNNING   FINISHED   FAILED   CANCELED\n" +
		"helloworld   0         0         1          0        0\n"
	if r.stdout != want {
		t.Errorf("status:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestGetStates(t *testing.T) {
	f := newFakeAPI(t)
	f.hold = true
	f.run(t, nil, nil, "func", "create", "--name", "slow", "ubuntu", "echo", "done").must(t)
	id := callIDLine.FindStringSubmatch(f.run(t, nil, nil, "func", "call", "slow").must(t).stdout)[1]

	// Queued, not waited for: the state on stderr, exit 1.
	r := f.run(t, nil, nil, "func", "get", id)
	if r.code != 1 || r.stdout != "" || r.stderr != "call "+id+" is PENDING\n" {
		t.Errorf("get of a queued call: %+v", r)
	}
	f.mu.Lock()
	f.calls[id].call.State = api.StateRunning
	f.mu.Unlock()
	r = f.run(t, nil, nil, "func", "get", id)
	if r.code != 1 || r.stderr != "call "+id+" is RUNNING\n" {
		t.Errorf("get of a running call: %+v", r)
	}
	r = f.run(t, nil, nil, "func", "get", "--wait", id).must(t)
	if r.stdout != "done\n" || r.stderr != "" {
		t.Errorf("get --wait: %+v", r)
	}

	// A failed call: its message on stderr, exit 1.
	f.hold = false
	f.run(t, nil, nil, "func", "create", "--name", "broken", "ubuntu", "fail").must(t)
	id = callIDLine.FindStringSubmatch(f.run(t, nil, nil, "func", "call", "broken").must(t).stdout)[1]
	r = f.run(t, nil, nil, "func", "get", id)
	if r.code != 1 || r.stderr != "Error: exit status 1: boom (call "+id+")\n" {
		t.Errorf("get of a failed call: %+v", r)
	}
	r = f.run(t, nil, nil, "func", "call", "--sync", "broken")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: exit status 1: boom (call ") {
		t.Errorf("call --sync of a failing function: %+v", r)
	}
	r = f.run(t, nil, nil, "func", "logs", "--callid", id, "broken").must(t)
	if !strings.HasSuffix(r.stdout, "[FAILED] CallId: "+id+", Message: exit status 1: boom\n") {
		t.Errorf("logs of a failed call:\n%s", r.stdout)
	}

	// Rotated out of the cache: 410.
	f.mu.Lock()
	f.calls[id].call.Rotated = true
	f.mu.Unlock()
	r = f.run(t, nil, nil, "func", "get", id)
	if r.code != 1 || !strings.Contains(r.stderr, "rotated out of the cache") {
		t.Errorf("get of a rotated call: %+v", r)
	}
}

func TestCancel(t *testing.T) {
	f := newFakeAPI(t)
	f.hold = true
	f.run(t, nil, nil, "func", "create", "--name", "slow", "ubuntu", "echo").must(t)
	id := callIDLine.FindStringSubmatch(f.run(t, nil, nil, "func", "call", "slow").must(t).stdout)[1]
	r := f.run(t, nil, nil, "func", "cancel", id).must(t)
	if r.stdout != id+"\n" || f.calls[id].call.State != api.StateCanceled {
		t.Errorf("cancel: %+v", r)
	}
	r = f.run(t, nil, nil, "func", "cancel", id)
	if r.code != 1 || !strings.Contains(r.stderr, "already ended") {
		t.Errorf("second cancel: %+v", r)
	}
}

func TestCompleteFunctionNames(t *testing.T) {
	f := newFakeAPI(t)
	f.run(t, nil, nil, "func", "create", "--name", "helloworld", "ubuntu").must(t)
	f.run(t, nil, nil, "func", "create", "--name", "resizer", "ubuntu").must(t)
	r := f.run(t, nil, nil, "__complete", "func", "rm", "hel").must(t)
	if r.stdout != "helloworld\n:4\n" {
		t.Errorf("completion of rm hel: %q", r.stdout)
	}
	r = f.run(t, nil, nil, "__complete", "func", "call", "helloworld", "").must(t)
	if r.stdout != ":4\n" {
		t.Errorf("completion after the name: %q", r.stdout)
	}
	r = f.run(t, nil, nil, "__complete", "func", "create", "--size", "m").must(t)
	if !strings.HasPrefix(r.stdout, "m1\nm2\nm3\n:4\n") {
		t.Errorf("completion of --size: %q", r.stdout)
	}
}

// TestSyncCallCutShort: when the connection of a sync call is cut after
// the agent sent the call ID (a proxy's timeout), hyper says which call
// goes on and how to fetch its output.
func TestSyncCallCutShort(t *testing.T) {
	f := newFakeAPI(t)
	f.run(t, nil, nil, "func", "create", "--name", "slow", "ubuntu", "echo", "hi").must(t)
	f.cutSync = true
	r := f.run(t, strings.NewReader("x"), nil, "func", "call", "--sync", "slow")
	id := "218b7b10-e7f1-4c48-ac3c-000000000002" // the fake counts the create too
	if r.code != 1 || !strings.Contains(r.stderr, "The call "+id+" was queued and goes on; fetch its output with: hyper func get --wait "+id) {
		t.Fatalf("cut sync call: %+v", r)
	}
}
