// Package testimages builds the small images the Docker tests run. No
// registry is reachable in CI, so images are built locally FROM scratch out of
// the static busybox of Debian's busybox-static package.
package testimages

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
)

// Busybox is the tag EnsureBusybox builds.
const Busybox = "hf-test/busybox:latest"

// Missing names an image that exists nowhere: pulling it must fail.
const Missing = "hf-test/does-not-exist:1"

// BytesFile is a file in the Busybox image whose content is BytesContent:
// every byte value, CR/LF and NUL included, to check binary safety of paths
// (log collection) that have no stdin to echo.
const BytesFile = "/testdata/bytes.bin"

// BusyboxPath is where the static busybox binary is taken from.
var BusyboxPath = "/bin/busybox"

// applets linked to /bin/busybox in the image.
var applets = []string{
	"sh", "echo", "cat", "sleep", "sha256sum", "head", "dd", "env", "wc",
	"true", "false", "printf", "tee", "ls", "kill",
}

// BytesContent is the content of BytesFile: 256 KiB of a pattern that covers
// every byte value in many positions.
func BytesContent() []byte {
	b := make([]byte, 256<<10)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

var (
	mu    sync.Mutex
	built = map[string]bool{}
)

// EnsureBusybox builds Busybox unless the engine has it already, once per
// process, and returns its tag.
func EnsureBusybox(ctx context.Context, cli *client.Client) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if built[Busybox] {
		return Busybox, nil
	}
	if _, err := cli.ImageInspect(ctx, Busybox); err == nil {
		built[Busybox] = true
		return Busybox, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect %s: %w", Busybox, err)
	}
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return "", fmt.Errorf("read static busybox (apt-get install -y busybox-static): %w", err)
	}
	// Debian's plain busybox package is dynamic and would not run FROM scratch.
	if f, err := elf.NewFile(bytes.NewReader(bb)); err != nil {
		return "", fmt.Errorf("%s: %w", BusyboxPath, err)
	} else if f.Section(".interp") != nil {
		return "", fmt.Errorf("%s is dynamically linked: apt-get install -y busybox-static", BusyboxPath)
	}
	buildCtx, err := busyboxContext(bb)
	if err != nil {
		return "", err
	}
	resp, err := cli.ImageBuild(ctx, buildCtx, build.ImageBuildOptions{
		Tags:        []string{Busybox},
		Remove:      true,
		ForceRemove: true,
		Dockerfile:  "Dockerfile",
	})
	if err != nil {
		return "", fmt.Errorf("build %s: %w", Busybox, err)
	}
	defer resp.Body.Close()
	// The build reports its errors inside the JSON stream, not as an HTTP status.
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, io.Discard, 0, false, nil); err != nil {
		return "", fmt.Errorf("build %s: %w", Busybox, err)
	}
	if _, err := cli.ImageInspect(ctx, Busybox); err != nil {
		return "", fmt.Errorf("build %s: image missing after build: %w", Busybox, err)
	}
	built[Busybox] = true
	return Busybox, nil
}

// EnsureMissing makes sure Missing is not present locally, so that a call of
// it has to pull and fails.
func EnsureMissing(ctx context.Context, cli *client.Client) (string, error) {
	if _, err := cli.ImageInspect(ctx, Missing); err == nil {
		return "", errors.New(Missing + " exists locally; remove it")
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect %s: %w", Missing, err)
	}
	return Missing, nil
}

// busyboxContext is the in-memory tar build context: the Dockerfile and a
// rootfs whose applet symlinks are made here, so the build needs no RUN (a
// RUN would need a runtime and a shell at build time).
func busyboxContext(bb []byte) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Typeflag: tar.TypeDir})
	}
	err := errors.Join(
		file("Dockerfile", 0o644, []byte("FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nCMD [\"sh\"]\n")),
		dir("rootfs/", 0o755),
		dir("rootfs/bin/", 0o755),
		dir("rootfs/tmp/", 0o1777),
		dir("rootfs/testdata/", 0o755),
		file("rootfs/bin/busybox", 0o755, bb),
		file("rootfs"+BytesFile, 0o644, BytesContent()),
	)
	for _, a := range applets {
		err = errors.Join(err, tw.WriteHeader(&tar.Header{
			Name: "rootfs/bin/" + a, Linkname: "busybox", Typeflag: tar.TypeSymlink, Mode: 0o777,
		}))
	}
	if err = errors.Join(err, tw.Close()); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	return &buf, nil
}

var (
	shimOnce sync.Once
	shimPath string
	shimErr  error
)

// Shim builds cmd/hf-shim (static, CGO_ENABLED=0) once per process into a
// temporary directory and returns its path; the local executor bind-mounts
// it into every call's container. RemoveShim deletes it (from TestMain).
func Shim() (string, error) {
	shimOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = "/usr/local/go/bin/go"
		}
		out, err := exec.Command(goBin, "env", "GOMOD").Output()
		if err != nil {
			shimErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "hf-shim-test-")
		if err != nil {
			shimErr = err
			return
		}
		p := filepath.Join(dir, "hf-shim")
		cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", p, "./cmd/hf-shim")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			shimErr = fmt.Errorf("go build hf-shim: %w\n%s", err, out)
			return
		}
		shimPath = p
	})
	return shimPath, shimErr
}

// RemoveShim deletes what Shim built.
func RemoveShim() {
	if shimPath != "" {
		os.RemoveAll(filepath.Dir(shimPath))
	}
}
