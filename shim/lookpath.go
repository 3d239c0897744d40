package shim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultPath is the search path when the environment has no PATH (the one
// Docker gives a container whose image sets none).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath resolves name like execvp does, but in pathList (the PATH of the
// command's environment, not the shim's) with relative entries taken from
// workdir. A name with a slash is used as is. Not found: ExitNotFound; found
// but not executable: ExitCannotExec.
func lookPath(name, pathList, workdir string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	var denied error
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if !filepath.IsAbs(p) && workdir != "" {
			p = filepath.Join(workdir, p)
		}
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() {
			continue
		}
		if fi.Mode()&0o111 == 0 {
			if denied == nil {
				denied = &codeError{code: ExitCannotExec, err: fmt.Errorf("exec %s: %s: %w", name, p, fs.ErrPermission)}
			}
			continue
		}
		if !filepath.IsAbs(p) {
			// os.StartProcess resolves it after the chdir to workdir.
			p = "./" + p
		}
		return p, nil
	}
	if denied != nil {
		return "", denied
	}
	return "", &codeError{code: ExitNotFound, err: fmt.Errorf("exec %s: %w in PATH %q", name, errNotFound, pathList)}
}

var errNotFound = errors.New("executable file not found")

// joinPath is filepath.Join for a directory and a file name.
func joinPath(dir, name string) string { return filepath.Join(dir, name) }
