package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"runtime/debug"
	"testing"
)

// -log-json: every line the agent logs is one JSON object (here the lines
// of an agent that refuses its flags after the logger is made).
func TestLogJSON(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	var stderr bytes.Buffer
	code := agentCommand([]string{"-log-json", "-data-dir", t.TempDir(), "-memory-limit", "64MiB", "-cluster-key", "short"}, &stderr)
	if code != 2 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	sc := bufio.NewScanner(&stderr)
	lines := 0
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("Error:")) {
			continue // the usage error goes to the user, not to the log
		}
		var v map[string]any
		if err := json.Unmarshal(line, &v); err != nil || v["@message"] == nil {
			t.Fatalf("not a JSON log line: %q (%v)", line, err)
		}
		lines++
	}
	if lines == 0 {
		t.Fatalf("nothing logged: %q", stderr.String())
	}
}
