package nomad

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/e2e/harness"
	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

var callIDOut = regexp.MustCompile(`^CallId: ([0-9a-f-]{36})\n$`)

// TestNomadWalkthrough runs the seed walkthrough verbatim with the hyper
// binary on the real agent, then the resizer with a binary round trip
// checked against the same convert run here, and checks what Nomad saw:
// `hyper pull` ran as a sysbatch job, the function's jobs went away with
// `hyper func rm`, every dispatched child was purged.
func TestNomadWalkthrough(t *testing.T) {
	a := startAgent(t)
	hello := harness.Name("helloworld")
	since := time.Now()

	harness.Hyper(t, a, nil, "pull", "ubuntu").Must(t, "pull ubuntu")
	checkPullRan(t, "ubuntu", since)
	harness.Hyper(t, a, nil, "func", "create", "--name", hello, "ubuntu", "echo", "HelloWorld").Must(t, "create")
	if n := len(nomadJobs(t, hello)); n != 2 {
		t.Fatalf("after create: %d Nomad jobs of %s, want 2 (the function job and its -big variant)", n, hello)
	}
	r := harness.Hyper(t, a, nil, "func", "call", hello).Must(t, "call")
	m := callIDOut.FindSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("call printed %q", r.Stdout)
	}
	id := string(m[1])
	r = harness.Hyper(t, a, nil, "func", "get", "--wait", id).Must(t, "get --wait")
	if string(r.Stdout) != "HelloWorld\n" {
		t.Fatalf("get --wait printed %s", r)
	}
	r = harness.Hyper(t, a, nil, "func", "logs", hello).Must(t, "logs")
	for _, ev := range []string{"[CALL] CallId: " + id, "[RUNNING] CallId: " + id, "[FINISHED] CallId: " + id + ", ShortStdout: HelloWorld"} {
		if !strings.Contains(string(r.Stdout), ev) {
			t.Fatalf("logs lack %q:\n%s", ev, r.Stdout)
		}
	}
	// The child is purged once the end is recorded (Release).
	harness.Eventually(t, time.Minute, func() (bool, string) {
		n := children(t, hello)
		return n == 0, fmt.Sprintf("%d dispatched children of %s left", n, hello)
	})
	harness.Hyper(t, a, nil, "func", "rm", hello).Must(t, "rm")
	harness.Eventually(t, time.Minute, func() (bool, string) {
		js := nomadJobs(t, hello)
		return len(js) == 0, fmt.Sprintf("Nomad jobs of %s after rm: %+v", hello, js)
	})

	// The resizer: a JPEG through stdin, the smaller one back on stdout,
	// byte for byte what the same convert gives here.
	resizer := harness.Name("resizer")
	harness.Hyper(t, a, nil, "pull", "v4tech/imagemagick").Must(t, "pull v4tech/imagemagick")
	harness.Hyper(t, a, nil, "func", "create", "--name", resizer, "v4tech/imagemagick", "convert", "-", "-resize", "50%", "fd:1").Must(t, "create resizer")
	dir := t.TempDir()
	picture := harness.GradientJPEG(t, 640, 480)
	if err := os.WriteFile(filepath.Join(dir, "picture.jpg"), picture, 0o644); err != nil {
		t.Fatal(err)
	}
	harness.Sh(t, a, dir, "cat picture.jpg | hyper func call --sync "+resizer+" > picture_small.jpg").Must(t, "resize")
	small, err := os.ReadFile(filepath.Join(dir, "picture_small.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	want := localConvert(t, picture)
	if sha256.Sum256(small) != sha256.Sum256(want) {
		t.Fatalf("resizer on Nomad: %d bytes (sha256 %x), convert here: %d bytes (sha256 %x)",
			len(small), sha256.Sum256(small), len(want), sha256.Sum256(want))
	}
	img, err := jpeg.Decode(bytes.NewReader(small))
	if err != nil || img.Bounds().Dx() != 320 || img.Bounds().Dy() != 240 {
		t.Fatalf("picture_small.jpg: %v %v", err, img)
	}
}

// TestNomadStdinSizes: binary stdin round trips through cat at the sizes
// around Nomad's 16 KiB dispatch payload cap (inline in the payload below
// it, the -big job's artifact above it) and at 1 MiB.
func TestNomadStdinSizes(t *testing.T) {
	a := startAgent(t)
	name := harness.Name("cat")
	harness.Hyper(t, a, nil, "func", "create", "--name", name, "ubuntu", "cat").Must(t, "create cat")
	for _, n := range []int{0, 11000, 16 << 10, 16<<10 + 1, 1 << 20} {
		in := make([]byte, n)
		if _, err := rand.Read(in); err != nil {
			t.Fatal(err)
		}
		r := harness.Hyper(t, a, in, "func", "call", "--sync", name).Must(t, fmt.Sprintf("call --sync with %d bytes", n))
		if sha256.Sum256(r.Stdout) != sha256.Sum256(in) {
			t.Fatalf("stdin of %d bytes: got %d bytes back that differ", n, len(r.Stdout))
		}
	}
}

// TestNomadEnvAndHeaders: the function's env and the request's headers
// reach the command.
func TestNomadEnvAndHeaders(t *testing.T) {
	a := startAgent(t)
	name := harness.Name("env")
	harness.Hyper(t, a, nil, "func", "create", "--name", name, "-e", "GREETING=hello there", "ubuntu",
		"sh", "-c", `echo "$GREETING|$HTTP_X_TRACE|$HYPER_FUNC_NAME|$HYPER_CALL_ID"`).Must(t, "create env")
	c := call(t, a, name, nil, http.Header{"X-Trace": {"abc 123"}})
	out := string(output(t, a, c.ID))
	if want := "hello there|abc 123|" + name + "|" + c.ID + "\n"; out != want {
		t.Fatalf("env: %q, want %q (%s)", out, want, describe(c))
	}
}

// checkPullRan: a sysbatch allocation of the image's pull job was placed
// after since (the job itself is purged once the pull is done; its
// allocations stay listed until Nomad's GC).
func checkPullRan(t *testing.T, img string, since time.Time) {
	t.Helper()
	sum := sha256.Sum256([]byte(img))
	suffix := "pull_" + hex.EncodeToString(sum[:6])
	resp, err := http.Get(nomadtest.RealAddr(t) + "/v1/allocations")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var allocs []struct {
		JobID, JobType, ClientStatus string
		CreateTime                   int64
	}
	if err := json.NewDecoder(resp.Body).Decode(&allocs); err != nil {
		t.Fatal(err)
	}
	for _, al := range allocs {
		if strings.HasSuffix(al.JobID, suffix) && al.JobType == "sysbatch" && time.Unix(0, al.CreateTime).After(since) {
			return
		}
	}
	t.Fatalf("no sysbatch allocation of a job ...%s since %s", suffix, since.Format(time.RFC3339))
}

// localConvert runs the stand-in convert of v4tech/imagemagick here.
func localConvert(t *testing.T, in []byte) []byte {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "convert")
	build := exec.Command("go", "build", "-o", bin, "github.com/hyperfunc/hyperfunc/e2e/testdata/imagemagick")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building convert: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-", "-resize", "50%", "fd:1")
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("convert here: %v", err)
	}
	return out
}
