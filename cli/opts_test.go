package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
)

func TestParseTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"300", 300, true},
		{"5m", 300, true},
		{"1h30m", 5400, true},
		{"1500ms", 2, true},
		{"-1", 0, false},
		{"-5m", 0, false},
		{"soon", 0, false},
		{"", 0, false},
	} {
		got, err := parseTimeout(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseTimeout(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func TestSizeNames(t *testing.T) {
	got := strings.Join(sizeNames(), " ")
	if got != "s1 s2 s3 s4 m1 m2 m3 l1 l2 l3" {
		t.Errorf("sizes %s", got)
	}
	if _, ok := api.Sizes[api.DefaultSize]; !ok {
		t.Errorf("default size %s unknown", api.DefaultSize)
	}
}

func TestRandomName(t *testing.T) {
	for range 200 {
		if n := randomName(); validateName(n) != nil {
			t.Fatalf("generated name %q is invalid", n)
		}
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"helloworld": true, "a": true, "a-b-1": true, strings.Repeat("a", 63): true,
		"": false, "-a": false, "a-": false, "A": false, "a_b": false, strings.Repeat("a", 64): false,
	} {
		if (validateName(name) == nil) != ok {
			t.Errorf("validateName(%q) ok=%v", name, !ok)
		}
	}
}

func TestParseEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(path, []byte("  # c\r\nA=1\r\n\nB = 2\nC=\"q\"\nHOME\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env, err := parseEnv([]string{"D=4"}, []string{path}, func(k string) string {
		return map[string]string{"HOME": "/root"}[k]
	})
	if err == nil {
		t.Fatalf("a key with a space was accepted: %v", env)
	}
	if err := os.WriteFile(path, []byte("  # c\r\nA=1\r\n\nC=\"q\"\nHOME\nUNSET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env, err = parseEnv([]string{"D=4", "A=override"}, []string{path}, func(k string) string {
		return map[string]string{"HOME": "/root"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "override", "C": `"q"`, "HOME": "/root", "D": "4"}
	if len(env) != len(want) {
		t.Fatalf("env %v, want %v", env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env[%s] = %q, want %q", k, env[k], v)
		}
	}
}

func TestHumanSince(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		0:                        "Less than a second ago",
		30 * time.Second:         "30 seconds ago",
		90 * time.Second:         "About a minute ago",
		5 * time.Minute:          "5 minutes ago",
		70 * time.Minute:         "About an hour ago",
		5 * time.Hour:            "5 hours ago",
		3 * 24 * time.Hour:       "3 days ago",
		21 * 24 * time.Hour:      "3 weeks ago",
		90 * 24 * time.Hour:      "3 months ago",
		3 * 365 * 24 * time.Hour: "3 years ago",
	} {
		if got := humanSince(now, now.Add(-d)); got != want {
			t.Errorf("humanSince(%v) = %q, want %q", d, got, want)
		}
	}
	if got := truncate("convert - -resize 50% fd:1", 20); got != "convert - -resize 5…" {
		t.Errorf("truncate: %q", got)
	}
}

func TestParseFilters(t *testing.T) {
	q, match, err := parseFilters([]string{"name=hel", "name=res", "label=team=web", "label=tier"})
	if err != nil {
		t.Fatal(err)
	}
	if q.Encode() != "label=team%3Dweb&label=tier&name=hel&name=res" {
		t.Errorf("query %s", q.Encode())
	}
	fn := &api.Function{Name: "helloworld", Labels: map[string]string{"team": "web", "tier": "1"}}
	if !match(fn) {
		t.Error("helloworld does not match")
	}
	fn.Labels["team"] = "db"
	if match(fn) {
		t.Error("team=db matches team=web")
	}
	fn.Labels["team"] = "web"
	fn.Name = "other"
	if match(fn) {
		t.Error("other matches name=hel|res")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSpinner(t *testing.T) {
	var buf syncBuffer
	if sp := startSpinner(&buf, false, time.Now, "x"); sp != nil {
		t.Fatal("disabled spinner started")
	}
	var nilSpinner *spinner
	nilSpinner.setLabel("x")
	nilSpinner.Stop()

	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := start
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	sp := startSpinner(&buf, true, clock, "call abc")
	mu.Lock()
	now = start.Add(2500 * time.Millisecond)
	mu.Unlock()
	sp.setLabel("call abc RUNNING")
	deadline := time.Now().Add(time.Minute) // only a hang: the next tick draws it
	for !strings.Contains(buf.String(), "call abc RUNNING 2.5s") {
		if time.Now().After(deadline) {
			t.Fatalf("spinner never showed the new label: %q", buf.String())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronizing
	}
	sp.Stop()
	sp.Stop() // idempotent
	out := buf.String()
	if !strings.HasPrefix(out, "\r\033[K⠋ call abc") || !strings.HasSuffix(out, "2.5s\r\033[K") {
		t.Errorf("spinner output %q", out)
	}
}

func TestIsTerminal(t *testing.T) {
	if isTerminal(&bytes.Buffer{}) || isTerminal(nil) || isTerminal((*os.File)(nil)) {
		t.Error("a buffer is a terminal")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a regular file is a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(r) {
		t.Error("a pipe is a terminal")
	}
}
