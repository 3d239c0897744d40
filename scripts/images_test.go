// Package scripts holds the machine setup scripts; this test checks what
// setup-docker.sh and build-images.sh leave behind: the seed walkthrough's
// images pull through the local mirror and work under runsc.
package scripts

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func requireSetup(t *testing.T) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") != "" {
		fail = t.Fatalf
	}
	if out, err := exec.Command("docker", "info", "--format", "{{json .RegistryConfig.Mirrors}}").CombinedOutput(); err != nil ||
		!bytes.Contains(out, []byte("127.0.0.1:5000")) {
		fail("no Docker engine with the local mirror (%v: %s); run scripts/setup-docker.sh", err, out)
		return
	}
	c := http.Client{Timeout: 30 * time.Second} // a busy registry is slow; in CI no answer fails the run
	resp, err := c.Get("http://127.0.0.1:5000/v2/")
	if err != nil {
		fail("local registry not answering (%v); run scripts/setup-docker.sh", err)
		return
	}
	resp.Body.Close()
}

func docker(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("docker", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

func TestUbuntuHelloWorld(t *testing.T) {
	requireSetup(t)
	docker(t, nil, "pull", "-q", "ubuntu")
	out := docker(t, nil, "run", "--rm", "--runtime=runsc", "--network=none", "ubuntu", "echo", "HelloWorld")
	if string(out) != "HelloWorld\n" {
		t.Fatalf("got %q", out)
	}
	// The seed's payload tip: echo Hello | hyper func call ... reaches stdin.
	out = docker(t, []byte("Hello\n"), "run", "-i", "--rm", "--runtime=runsc", "--network=none", "ubuntu", "cat")
	if string(out) != "Hello\n" {
		t.Fatalf("got %q", out)
	}
}

func TestImagemagickResize(t *testing.T) {
	requireSetup(t)
	docker(t, nil, "pull", "-q", "v4tech/imagemagick")
	src := image.NewRGBA(image.Rect(0, 0, 800, 600))
	for y := 0; y < 600; y++ {
		for x := 0; x < 800; x++ {
			src.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8((x ^ y) & 0xff), 255})
		}
	}
	var in bytes.Buffer
	if err := jpeg.Encode(&in, src, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	out := docker(t, in.Bytes(), "run", "-i", "--rm", "--runtime=runsc", "--network=none",
		"v4tech/imagemagick", "convert", "-", "-resize", "50%", "fd:1")
	img, format, err := image.Decode(bytes.NewReader(out))
	if err != nil || format != "jpeg" {
		t.Fatalf("output is not a JPEG (%s, %v), %d bytes", format, err, len(out))
	}
	if b := img.Bounds(); b.Dx() != 400 || b.Dy() != 300 || len(out) >= in.Len() {
		t.Fatalf("got %dx%d, %d bytes from %d", b.Dx(), b.Dy(), len(out), in.Len())
	}
	t.Logf("800x600 %d bytes -> 400x300 %d bytes", in.Len(), len(out))
}
