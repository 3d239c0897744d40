package shim

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The tests in this file run hf-shim as the entrypoint of a FROM-scratch
// image that holds nothing but hf-shim and hftestfn (no shell, no libc), on
// the local Docker engine under gVisor with no network, the way Nomad runs it.

const dockerSocket = "/var/run/docker.sock"

// requireDocker skips (or fails, under CI) when no Docker engine with the
// runsc runtime answers.
func requireDocker(t *testing.T) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") != "" {
		fail = t.Fatalf
	}
	if _, err := os.Stat(dockerSocket); err != nil {
		fail("no Docker engine (%v); run scripts/setup-docker.sh", err)
		return
	}
	out, err := exec.Command("docker", "info", "--format", "{{json .Runtimes}}").CombinedOutput()
	if err != nil {
		fail("docker info: %v: %s", err, out)
		return
	}
	if !bytes.Contains(out, []byte(`"runsc"`)) {
		fail("the Docker engine has no runsc runtime; run scripts/setup-docker.sh")
	}
}

// buildScratchImage builds hf-shim and hftestfn statically and imports them
// as a scratch image; it returns the image name and removes it at cleanup.
func buildScratchImage(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for pkg, out := range map[string]string{"../cmd/hf-shim": "hf-shim", "../e2e/testdata/hftestfn": "bin/hftestfn"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(root, out), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	if err := tw.AddFS(os.DirFS(root)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	image := fmt.Sprintf("hf-shim-test:%d", os.Getpid())
	cmd := exec.Command("docker", "import",
		"--change", `ENTRYPOINT ["/hf-shim"]`, "--change", "ENV PATH=/bin", "-", image)
	cmd.Stdin = &tarball
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })
	return image
}

// call is one container run: a host dir mounted at /hf holds the envelope
// (/hf/payload), an optional stdin file (/hf/in) and the result dir (/hf/out).
type call struct {
	t   *testing.T
	dir string
}

func newCall(t *testing.T, env *Envelope, stdinFile []byte) *call {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "out"), 0o777); err != nil {
		t.Fatal(err)
	}
	env.Version, env.ResultDir = EnvelopeVersion, "/hf/out"
	if stdinFile != nil {
		env.StdinFile = "/hf/in"
		if err := os.WriteFile(filepath.Join(dir, "in"), stdinFile, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "payload"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return &call{t: t, dir: dir}
}

func (c *call) dockerArgs(image string, extra ...string) []string {
	args := append([]string{"run", "--runtime=runsc", "--network=none", "-v", c.dir + ":/hf"}, extra...)
	return append(args, image, "-envelope", "/hf/payload")
}

// run runs the container to its end and returns its exit code.
func (c *call) run(image string) int {
	c.t.Helper()
	out, err := exec.Command("docker", c.dockerArgs(image, "--rm")...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		c.t.Logf("container output: %s", out)
		return ee.ExitCode()
	default:
		c.t.Fatalf("docker run: %v\n%s", err, out)
		return -1
	}
}

func (c *call) result() (*Result, []byte) {
	c.t.Helper()
	res, err := ReadResult(filepath.Join(c.dir, "out"))
	if err != nil {
		c.t.Fatal(err)
	}
	stdout, err := os.ReadFile(filepath.Join(c.dir, "out", StdoutFile))
	if err != nil {
		c.t.Fatal(err)
	}
	return res, stdout
}

func TestDockerScratchImage(t *testing.T) {
	requireDocker(t)
	image := buildScratchImage(t)
	fn := "/bin/hftestfn"

	t.Run("no-shell", func(t *testing.T) {
		out, err := exec.Command("docker", "run", "--rm", "--runtime=runsc", "--network=none",
			"--entrypoint", "/bin/sh", image, "-c", "true").CombinedOutput()
		if err == nil {
			t.Fatalf("the image has a shell: %s", out)
		}
		c := newCall(t, &Envelope{Argv: []string{"sh", "-c", "echo hi"}, StdoutLimit: 100}, nil)
		if code := c.run(image); code != ExitNotFound {
			t.Fatalf("exit %d", code)
		}
		if res, _ := c.result(); res.ExitCode != ExitNotFound || !strings.Contains(res.Error, "not found") {
			t.Fatalf("result %+v", res)
		}
	})

	random := make([]byte, 300_000)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	t.Run("cat-inline", func(t *testing.T) {
		c := newCall(t, &Envelope{CallID: "inline", Argv: []string{"hftestfn", "cat"}, Stdin: random, StdoutLimit: 1 << 20}, nil)
		if code := c.run(image); code != 0 {
			t.Fatalf("exit %d", code)
		}
		res, stdout := c.result()
		if !bytes.Equal(stdout, random) || res.ExitCode != 0 || res.CallID != "inline" || res.Truncated {
			t.Fatalf("result %+v, %d bytes", res, len(stdout))
		}
	})
	t.Run("cat-file", func(t *testing.T) {
		c := newCall(t, &Envelope{Argv: []string{fn, "cat"}, StdoutLimit: 1 << 20}, random)
		if code := c.run(image); code != 0 {
			t.Fatalf("exit %d", code)
		}
		if _, stdout := c.result(); !bytes.Equal(stdout, random) {
			t.Fatalf("%d bytes differ", len(stdout))
		}
	})
	t.Run("env", func(t *testing.T) {
		c := newCall(t, &Envelope{Argv: []string{fn, "env", "HTTP_X_TEST"}, Env: map[string]string{"HTTP_X_TEST": "hello env"}, StdoutLimit: 100}, nil)
		c.run(image)
		if _, stdout := c.result(); string(stdout) != "hello env\n" {
			t.Fatalf("stdout %q", stdout)
		}
	})
	t.Run("stdout-over-limit", func(t *testing.T) {
		c := newCall(t, &Envelope{Argv: []string{fn, "bytes", "5000000"}, StdoutLimit: 4096}, nil)
		c.run(image)
		res, stdout := c.result()
		if !res.Truncated || res.StdoutBytes != 4096 || len(stdout) != 4096 || !bytes.HasPrefix(stdout, []byte("abcdefghijklmnopqrstuvwxyzabc")) {
			t.Fatalf("result %+v, %d bytes", res, len(stdout))
		}
	})
	t.Run("exit-code", func(t *testing.T) {
		c := newCall(t, &Envelope{Argv: []string{fn, "exit", "7"}, StdoutLimit: 100}, nil)
		if code := c.run(image); code != 7 {
			t.Fatalf("exit %d", code)
		}
		if res, _ := c.result(); res.ExitCode != 7 {
			t.Fatalf("result %+v", res)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		// Far longer than any deadline: the result tells a killed call
		// from one that ended on its own.
		c := newCall(t, &Envelope{Argv: []string{fn, "sleep", "3600s"}, StdoutLimit: 100, TimeoutMs: 500}, nil)
		if code := c.run(image); code != 143 {
			t.Fatalf("exit %d", code)
		}
		if res, _ := c.result(); !res.TimedOut || res.Signal != "SIGTERM" || res.ExitCode != 143 {
			t.Fatalf("result %+v", res)
		}
	})
	t.Run("docker-stop-forwards-sigterm", func(t *testing.T) {
		c := newCall(t, &Envelope{Argv: []string{fn, "trap"}, StdoutLimit: 100}, nil)
		name := fmt.Sprintf("hf-shim-test-%d-stop", os.Getpid())
		if out, err := exec.Command("docker", c.dockerArgs(image, "-d", "--name", name)...).CombinedOutput(); err != nil {
			t.Fatalf("docker run -d: %v\n%s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
		waitFor(t, 2*time.Minute, func() bool {
			out, _ := exec.Command("docker", "logs", name).CombinedOutput()
			return bytes.Contains(out, []byte("ready"))
		})
		if out, err := exec.Command("docker", "stop", "-t", "30", name).CombinedOutput(); err != nil {
			t.Fatalf("docker stop: %v\n%s", err, out)
		}
		out, err := exec.Command("docker", "inspect", "--format", "{{.State.ExitCode}}", name).Output()
		if err != nil || strings.TrimSpace(string(out)) != "42" {
			t.Fatalf("container exit code %q, %v", out, err)
		}
		if res, stdout := c.result(); res.ExitCode != 42 || string(stdout) != "got SIGTERM\n" {
			t.Fatalf("result %+v, stdout %q", res, stdout)
		}
	})
	t.Run("envelope-from-env", func(t *testing.T) {
		c := newCall(t, &Envelope{Argv: []string{fn, "bytes", "3"}, StdoutLimit: 100}, nil)
		out, err := exec.Command("docker", "run", "--rm", "--runtime=runsc", "--network=none", "-v", c.dir+":/hf",
			"-e", "HF_ENVELOPE=/hf/payload", image).CombinedOutput()
		if err != nil {
			t.Fatalf("docker run: %v\n%s", err, out)
		}
		if _, stdout := c.result(); string(stdout) != "abc" {
			t.Fatalf("stdout %q", stdout)
		}
	})
	t.Run("bad-envelope", func(t *testing.T) {
		c := newCall(t, &Envelope{Argv: []string{fn, "cat"}, StdoutLimit: -1}, nil)
		if code := c.run(image); code != ExitShimError {
			t.Fatalf("exit %d", code)
		}
		res, err := ReadResult(filepath.Join(c.dir, "out"))
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != ExitShimError || !strings.Contains(res.Error, "stdout_limit") {
			t.Fatalf("result %+v", res)
		}
	})
}

// TestDockerSeal runs the shim as root with only CAP_SETUID, CAP_SETGID and
// CAP_KILL, the command as nobody, as the Nomad executor runs a sealable
// sandbox: the command cannot write to the shim's stdout (its forged seal
// never shows) nor kill it, what it left in another session is ended
// before the seal (the seal is printed only when no process is left), and
// the seal is the shim's stdout's only line.
func TestDockerSeal(t *testing.T) {
	requireDocker(t)
	image := buildScratchImage(t)
	sealable := []string{"--user", "0:0", "--cap-drop", "ALL", "--cap-add", "SETUID", "--cap-add", "SETGID",
		"--cap-add", "KILL", "--security-opt", "no-new-privileges"}
	run := func(t *testing.T, c *call, dockerArgs []string, as string) (stdout, stderr string) {
		t.Helper()
		stdout, stderr, err := runAs(c, image, dockerArgs, as)
		if err != nil {
			t.Fatalf("docker run: %v\nstderr: %s", err, stderr)
		}
		return stdout, stderr
	}

	t.Run("hostile-command", func(t *testing.T) {
		c := newCall(t, &Envelope{CallID: "sealcall", Argv: []string{"hftestfn", "hostile"}, StdoutLimit: 1 << 20}, nil)
		stdout, stderr := run(t, c, sealable, "65534:65534")
		if stdout != SealLine("sealcall") {
			t.Fatalf("the container's stdout is %q, want only the seal %q (stderr: %s)", stdout, SealLine("sealcall"), stderr)
		}
		for _, want := range []string{"forge /proc/1/fd/1: open /proc/1/fd/1: permission denied", "kill 1: operation not permitted"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q: %s", want, stderr)
			}
		}
		res, out := c.result()
		// The lingering process held the stdout pipe: it was ended, so
		// its forged lines after the command's exit are not in the
		// output, and the command's own line is.
		if res.ExitCode != 0 || !strings.HasPrefix(string(out), "uid=65534 gid=65534\n") {
			t.Fatalf("result %+v, stdout %q", res, out)
		}
	})
	t.Run("home", func(t *testing.T) {
		// Docker gave the root container HOME=/root; the command gets
		// what Docker gives its user: "/" when the image's /etc/passwd
		// (none here) does not list it.
		c := newCall(t, &Envelope{CallID: "home", Argv: []string{"hftestfn", "env", "HOME"}, StdoutLimit: 100}, nil)
		if stdout, _ := run(t, c, sealable, "65534:65534"); stdout != SealLine("home") {
			t.Fatalf("stdout %q", stdout)
		}
		if _, out := c.result(); string(out) != "/\n" {
			t.Fatalf("HOME %q, want /", out)
		}
	})
	t.Run("root-command-no-seal", func(t *testing.T) {
		// A command of the shim's own uid could forge anything: no seal.
		c := newCall(t, &Envelope{CallID: "rootcall", Argv: []string{"hftestfn", "env", "HOME"}, StdoutLimit: 100}, nil)
		stdout, _ := run(t, c, sealable, "0:0")
		if stdout != "" {
			t.Fatalf("stdout %q, want nothing", stdout)
		}
		if res, _ := c.result(); res.ExitCode != 0 {
			t.Fatalf("result %+v", res)
		}
	})
	t.Run("not-root-no-seal", func(t *testing.T) {
		// A shim that is not root cannot set groups: the call fails,
		// visibly, and nothing is sealed.
		c := newCall(t, &Envelope{CallID: "userx", Argv: []string{"hftestfn", "env", "HOME"}, StdoutLimit: 100}, nil)
		if err := os.Chmod(filepath.Join(c.dir, "out"), 0o777); err != nil {
			t.Fatal(err)
		}
		stdout, _, _ := runAs(c, image, []string{"--user", "65534:65534", "--cap-drop", "ALL"}, "65534:65534")
		if stdout != "" {
			t.Fatalf("stdout %q, want nothing", stdout)
		}
		if res, _ := c.result(); res.ExitCode != ExitCannotExec || !strings.Contains(res.Error, "operation not permitted") {
			t.Fatalf("result %+v", res)
		}
	})
}

// runAs runs c's container with dockerArgs and hf-shim -as as, and
// returns the container's stdout and stderr apart.
func runAs(c *call, image string, dockerArgs []string, as string) (stdout, stderr string, err error) {
	args := c.dockerArgs(image, append([]string{"--rm"}, dockerArgs...)...)
	args = append(args[:len(args)-2], "-as", as, "-envelope", "/hf/payload")
	var o, e bytes.Buffer
	cmd := exec.Command("docker", args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestDockerSealForkRace: a chain of processes that fork the next and
// exit at once (each lives microseconds) must not outlive the seal: the
// shim writes result.json only after its end of every process, so a
// process of the chain that finds result.json (it writes /hf/out/late)
// lived on after EndAll answered "none left".
func TestDockerSealForkRace(t *testing.T) {
	requireDocker(t)
	image := buildScratchImage(t)
	sealable := []string{"--user", "0:0", "--cap-drop", "ALL", "--cap-add", "SETUID", "--cap-add", "SETGID",
		"--cap-add", "KILL", "--security-opt", "no-new-privileges"}
	rounds, chains := 3, "8"
	if s := os.Getenv("HF_FORKRACE_CHAINS"); s != "" {
		chains = s
	}
	if s := os.Getenv("HF_FORKRACE_ROUNDS"); s != "" {
		fmt.Sscan(s, &rounds)
	}
	for i := range rounds {
		c := newCall(t, &Envelope{CallID: fmt.Sprintf("race%d", i), Argv: []string{"hftestfn", "forkrace", "/hf/out", chains}, StdoutLimit: 100}, nil)
		stdout, stderr, err := runAs(c, image, sealable, "65534:65534")
		if err != nil {
			t.Fatalf("docker run: %v\nstderr: %s", err, stderr)
		}
		late, _ := os.ReadFile(filepath.Join(c.dir, "out", "late"))
		t.Logf("round %d: stdout %q, late %d", i, stdout, len(late))
		if stdout == SealLine(c.callIDOf(t)) && len(late) > 0 {
			t.Fatalf("round %d: sealed, yet %d process(es) of the function found result.json", i, len(late))
		}
	}
}

func (c *call) callIDOf(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(c.dir, "payload"))
	if err != nil {
		t.Fatal(err)
	}
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	return env.CallID
}
