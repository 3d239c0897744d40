package ui

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// The embedded files keep the UI's rules, checked on their text: no
// inline script (the CSP would block it anyway, silently), no API that
// parses a string as markup or code (tenant text must go in as text), and
// every module a script imports is embedded.
func TestAssetsRules(t *testing.T) {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		t.Fatal(err)
	}
	html, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(string(html), -1) {
		if !strings.Contains(tag, ` src="`) {
			t.Errorf("index.html has an inline script: %s", tag)
		}
	}
	if regexp.MustCompile(`\son[a-z]+=|style=|https?://`).Match(html) {
		t.Error("index.html has an inline handler, an inline style or an outside URL")
	}
	forbidden := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|https?://`)
	imports := regexp.MustCompile(`from '\./([a-z]+\.js)'`)
	n := 0
	err = fs.WalkDir(sub, "js", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := fs.ReadFile(sub, path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if m := forbidden.FindString(line); m != "" && !strings.HasPrefix(strings.TrimSpace(line), "//") {
				t.Errorf("%s:%d uses %s", path, i+1, m)
			}
		}
		for _, m := range imports.FindAllStringSubmatch(string(b), -1) {
			if _, err := fs.Stat(sub, "js/"+m[1]); err != nil {
				t.Errorf("%s imports %s, which is not embedded", path, m[1])
			}
		}
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("walking the scripts: %v (%d files)", err, n)
	}
}
