package shim

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const validEnvelope = `{"v":1,"call_id":"c1","argv":["echo","hi"],"env":{"A":"b"},"workdir":"/w","stdin":"aGk=","stdout_limit":1048576,"timeout_ms":5000,"result_dir":"/alloc/data"}`

func TestDecodeEnvelopeValid(t *testing.T) {
	env, err := DecodeEnvelope([]byte(validEnvelope))
	if err != nil {
		t.Fatal(err)
	}
	want := &Envelope{Version: 1, CallID: "c1", Argv: []string{"echo", "hi"}, Env: map[string]string{"A": "b"},
		Workdir: "/w", Stdin: []byte("hi"), StdoutLimit: 1 << 20, TimeoutMs: 5000, ResultDir: "/alloc/data"}
	if !reflect.DeepEqual(env, want) {
		t.Fatalf("got %+v", env)
	}
	if _, err := DecodeEnvelope([]byte(`{"v":1,"argv":["x"],"stdout_limit":0,"result_dir":"/r","stdin_file":"/local/in"}`)); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeEnvelopeRejects(t *testing.T) {
	for name, body := range map[string]string{
		"empty":            ``,
		"null":             `null`,
		"array":            `[]`,
		"not json":         `v=1`,
		"unknown field":    `{"v":1,"argv":["x"],"stdout_limit":1,"result_dir":"/r","extra":1}`,
		"case variant":     `{"v":1,"ARGV":["x"],"stdout_limit":1,"result_dir":"/r"}`,
		"version 0":        `{"argv":["x"],"stdout_limit":1,"result_dir":"/r"}`,
		"version 2":        `{"v":2,"argv":["x"],"stdout_limit":1,"result_dir":"/r"}`,
		"no argv":          `{"v":1,"stdout_limit":1,"result_dir":"/r"}`,
		"empty argv":       `{"v":1,"argv":[],"stdout_limit":1,"result_dir":"/r"}`,
		"empty argv0":      `{"v":1,"argv":[""],"stdout_limit":1,"result_dir":"/r"}`,
		"nul in argv":      `{"v":1,"argv":["a\u0000b"],"stdout_limit":1,"result_dir":"/r"}`,
		"negative limit":   `{"v":1,"argv":["x"],"stdout_limit":-1,"result_dir":"/r"}`,
		"negative timeout": `{"v":1,"argv":["x"],"stdout_limit":1,"timeout_ms":-5,"result_dir":"/r"}`,
		"relative result":  `{"v":1,"argv":["x"],"stdout_limit":1,"result_dir":"alloc/data"}`,
		"no result dir":    `{"v":1,"argv":["x"],"stdout_limit":1}`,
		"both stdins":      `{"v":1,"argv":["x"],"stdout_limit":1,"result_dir":"/r","stdin":"aGk=","stdin_file":"/f"}`,
		"bad env key":      `{"v":1,"argv":["x"],"stdout_limit":1,"result_dir":"/r","env":{"A=B":"c"}}`,
		"empty env key":    `{"v":1,"argv":["x"],"stdout_limit":1,"result_dir":"/r","env":{"":"c"}}`,
		"trailing data":    validEnvelope + ` {}`,
		"trailing garbage": validEnvelope + `x`,
		"wrong type":       `{"v":"1","argv":["x"],"stdout_limit":1,"result_dir":"/r"}`,
		"bad base64":       `{"v":1,"argv":["x"],"stdout_limit":1,"result_dir":"/r","stdin":"!!"}`,
		"too large":        `{"v":1,"call_id":"` + strings.Repeat("x", MaxEnvelopeSize) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			env, err := DecodeEnvelope([]byte(body))
			if err == nil || env != nil || !errors.Is(err, ErrBadEnvelope) {
				t.Fatalf("got %+v, %v; want ErrBadEnvelope", env, err)
			}
		})
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range []string{
		validEnvelope,
		`{"v":1,"argv":["x"],"stdout_limit":0,"result_dir":"/r","stdin_file":"/local/in"}`,
		`{"v":1,"argv":["x"],"stdout_limit":-1,"result_dir":"/r"}`,
		`{"v":1,"argv":[],"stdout_limit":1,"result_dir":"r"}`,
		`{"v":1,"argv":["x"],"stdout_limit":1,"result_dir":"/r","Extra":true}`,
		`{"v":1e400}`, `[1,2]`, `null`, `"s"`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := DecodeEnvelope(data)
		if err != nil {
			if env != nil || !errors.Is(err, ErrBadEnvelope) {
				t.Fatalf("error %v with envelope %+v", err, env)
			}
			salvage(data) // must not panic either
			return
		}
		if env.Version != EnvelopeVersion || len(env.Argv) == 0 || env.Argv[0] == "" ||
			env.StdoutLimit < 0 || env.TimeoutMs < 0 || !filepath.IsAbs(env.ResultDir) {
			t.Fatalf("accepted an invalid envelope: %+v", env)
		}
		// What was accepted survives a round trip.
		again, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		env2, err := DecodeEnvelope(again)
		if err != nil {
			t.Fatalf("round trip of %s: %v", again, err)
		}
		if !reflect.DeepEqual(normal(env), normal(env2)) {
			t.Fatalf("round trip changed %+v into %+v", env, env2)
		}
	})
}

// normal makes empty and nil maps and slices compare equal.
func normal(e *Envelope) Envelope {
	c := *e
	if len(c.Env) == 0 {
		c.Env = nil
	}
	if len(c.Stdin) == 0 {
		c.Stdin = nil
	}
	return c
}
