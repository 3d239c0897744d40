package cli

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cli -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run go test ./cli -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// runForTest runs the CLI with no agent configured (usage errors and help
// never reach one) and reports everything it printed.
func runForTest(args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	env := map[string]string{"HYPER_ADDR": "http://127.0.0.1:1"}
	code = Run(args, nil, &out, &errb, func(k string) string { return env[k] })
	return out.String(), errb.String(), code
}

// allCommands lists the command paths of the tree, help excepted.
func allCommands() [][]string {
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		out = append(out, path)
		for _, sub := range c.Commands() {
			if sub.Name() == "help" {
				continue
			}
			walk(sub, append(append([]string{}, path...), sub.Name()))
		}
	}
	root := (&app{env: os.Getenv}).rootCommand()
	// cobra adds the completion command when the tree executes.
	root.InitDefaultCompletionCmd()
	walk(root, nil)
	return out
}

func TestHelpGolden(t *testing.T) {
	cmds := allCommands()
	if len(cmds) < 18 {
		t.Fatalf("only %d commands: %v", len(cmds), cmds)
	}
	for _, path := range cmds {
		name := strings.Join(append([]string{"hyper"}, path...), "_")
		t.Run(name, func(t *testing.T) {
			stdout, stderr, code := runForTest(append(path, "--help")...)
			if code != ExitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			golden(t, filepath.Join("help", name+".golden"), stdout)

			// "hyper help X" says the same.
			alt, _, _ := runForTest(append([]string{"help"}, path...)...)
			if alt != stdout {
				t.Errorf("hyper help %s differs from --help", strings.Join(path, " "))
			}
		})
	}
}

// Usage errors exit 2 and never reach the agent (there is none here: a
// request would fail with exit 1).
var usageCases = []struct {
	name string
	args []string
}{
	{"unknown_command", []string{"bogus"}},
	{"unknown_func_command", []string{"func", "bogus"}},
	{"unknown_flag", []string{"func", "ls", "--bogus"}},
	{"unknown_global_flag", []string{"--bogus", "func", "ls"}},
	{"create_no_image", []string{"func", "create", "--name", "x"}},
	{"create_bad_size", []string{"func", "create", "--size", "x9", "ubuntu"}},
	{"create_bad_timeout", []string{"func", "create", "--timeout", "soon", "ubuntu"}},
	{"create_negative_timeout", []string{"func", "create", "--timeout", "-5s", "ubuntu"}},
	{"create_bad_name", []string{"func", "create", "--name", "Hello_World", "ubuntu"}},
	{"create_bad_env", []string{"func", "create", "-e", "=x", "ubuntu"}},
	{"create_missing_env_file", []string{"func", "create", "--env-file", "/nonexistent/env", "ubuntu"}},
	{"create_flag_without_value", []string{"func", "create", "--name"}},
	{"update_nothing", []string{"func", "update", "fn"}},
	{"update_no_name", []string{"func", "update", "--refresh"}},
	{"update_bad_size", []string{"func", "update", "--size", "xl", "fn"}},
	{"call_no_name", []string{"func", "call"}},
	{"call_two_names", []string{"func", "call", "a", "b"}},
	{"call_bad_header", []string{"func", "call", "-H", "NoColon", "fn"}},
	{"get_no_id", []string{"func", "get", "--wait"}},
	{"logs_negative_tail", []string{"func", "logs", "--tail", "-1", "fn"}},
	{"logs_bad_tail", []string{"func", "logs", "--tail", "many", "fn"}},
	{"ls_bad_filter", []string{"func", "ls", "-f", "image=ubuntu"}},
	{"ls_extra_arg", []string{"func", "ls", "fn"}},
	{"inspect_bad_template", []string{"func", "inspect", "-f", "{{.Name", "fn"}},
	{"rm_no_name", []string{"func", "rm"}},
	{"status_no_name", []string{"func", "status"}},
	{"cancel_no_id", []string{"func", "cancel"}},
	{"pull_no_image", []string{"pull"}},
	{"version_extra_arg", []string{"version", "x"}},
	{"bad_addr", []string{"--addr", "http://", "func", "ls"}},
}

func TestUsageErrorsGolden(t *testing.T) {
	for _, tc := range usageCases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runForTest(tc.args...)
			if code != ExitUsage {
				t.Errorf("exit code %d, want %d; stderr %q", code, ExitUsage, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
			golden(t, filepath.Join("usage", tc.name+".golden"),
				fmt.Sprintf("$ hyper %s\n%s", strings.Join(tc.args, " "), stderr))
		})
	}
}
