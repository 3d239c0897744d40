package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hyperfunc/hyperfunc/api"
)

// nameRE is the rule for function names (DESIGN.md §3).
var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

const maxNameLen = 63

func validateName(name string) error {
	if len(name) > maxNameLen || !nameRE.MatchString(name) {
		return usagef("invalid function name %q: use lowercase letters, digits and '-', at most %d characters, starting and ending with a letter or digit", name, maxNameLen)
	}
	return nil
}

// sizeNames lists api.Sizes in order (s1 < s2 < ... < l3).
func sizeNames() []string {
	names := make([]string, 0, len(api.Sizes))
	for n := range api.Sizes {
		names = append(names, n)
	}
	order := map[byte]int{'s': 0, 'm': 1, 'l': 2}
	slices.SortFunc(names, func(x, y string) int {
		if order[x[0]] != order[y[0]] {
			return order[x[0]] - order[y[0]]
		}
		return strings.Compare(x, y)
	})
	return names
}

func validateSize(size string) error {
	if _, ok := api.Sizes[size]; !ok {
		return usagef("invalid size %q: use one of %s", size, strings.Join(sizeNames(), ", "))
	}
	return nil
}

// parseTimeout takes seconds ("300") or a Go duration ("5m", "1h30m") and
// returns whole seconds, rounded up. 0 means no limit.
func parseTimeout(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, usagef("invalid timeout %q: must not be negative", s)
		}
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, usagef("invalid timeout %q: use seconds (300) or a duration (5m, 1h30m)", s)
	}
	if d < 0 {
		return 0, usagef("invalid timeout %q: must not be negative", s)
	}
	return int64(math.Ceil(d.Seconds())), nil
}

// parseEnv builds a function's env the way `docker run` does: env files
// first, then -e entries. "KEY" alone takes KEY from the CLI's environment
// and is skipped when it is unset there.
func parseEnv(entries, files []string, getenv func(string) string) (map[string]string, error) {
	env := map[string]string{}
	for _, f := range files {
		lines, err := readEnvFile(f)
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			if err := addEnv(env, l, getenv); err != nil {
				return nil, usagef("env file %s: %v", f, err)
			}
		}
	}
	for _, e := range entries {
		if err := addEnv(env, e, getenv); err != nil {
			return nil, usagef("%v", err)
		}
	}
	return env, nil
}

func addEnv(env map[string]string, entry string, getenv func(string) string) error {
	k, v, ok := strings.Cut(entry, "=")
	if k == "" || strings.ContainsAny(k, " \t") {
		return fmt.Errorf("invalid environment variable %q: want KEY=VALUE", entry)
	}
	if !ok {
		v, ok = lookupEnv(getenv, k)
		if !ok {
			return nil
		}
	}
	env[k] = v
	return nil
}

func lookupEnv(getenv func(string) string, k string) (string, bool) {
	v := getenv(k)
	return v, v != ""
}

// readEnvFile reads a docker-style env file: KEY=VALUE lines, blank lines
// and # comments skipped, values taken verbatim (no quote processing).
func readEnvFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("reading env file: %v", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimLeft(sc.Text(), " \t")
		l = strings.TrimSuffix(l, "\r")
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, usagef("reading env file %s: %v", path, err)
	}
	return lines, nil
}

// parseLabels parses -l KEY=VALUE entries; "KEY" alone is an empty label.
func parseLabels(entries []string) (map[string]string, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	labels := map[string]string{}
	for _, e := range entries {
		k, v, _ := strings.Cut(e, "=")
		if k == "" {
			return nil, usagef("invalid label %q: want KEY=VALUE", e)
		}
		labels[k] = v
	}
	return labels, nil
}

// parseHeaders parses curl-style -H "Name: value" entries.
func parseHeaders(entries []string) (http.Header, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	h := http.Header{}
	for _, e := range entries {
		k, v, ok := strings.Cut(e, ":")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, usagef("invalid header %q: want \"Name: value\"", e)
		}
		h.Add(k, strings.TrimSpace(v))
	}
	return h, nil
}
