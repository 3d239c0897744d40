package localexec

import (
	"bytes"
	"fmt"
	"strings"
	"sync"

	"github.com/hyperfunc/hyperfunc/executor"
)

// DefaultStdoutLimit applies to a Spec without StdoutLimit.
const DefaultStdoutLimit = 1 << 20

// capped keeps the first limit bytes written to it and drops the rest (the
// stderr preview). The first byte past the limit calls over once, if set.
// It keeps accepting writes so the stream is drained.
type capped struct {
	mu        sync.Mutex
	limit     int64
	buf       bytes.Buffer
	truncated bool
	over      func()
}

func (w *capped) Write(p []byte) (int, error) {
	w.mu.Lock()
	room := w.limit - int64(w.buf.Len())
	fire := false
	if int64(len(p)) > room {
		if room > 0 {
			w.buf.Write(p[:room])
		}
		fire = !w.truncated && w.over != nil
		w.truncated = true
	} else {
		w.buf.Write(p)
	}
	w.mu.Unlock()
	if fire {
		w.over()
	}
	return len(p), nil
}

func (w *capped) result() ([]byte, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes()), w.truncated
}

func outputMessage(limit int64) string {
	return executor.OutputExceeds(limit)
}

// exitMessage is "exit code 3: <first line of stderr>".
func exitMessage(code int, stderr string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(stderr), "\n")
	line = strings.TrimSpace(line)
	if len(line) > 200 {
		line = line[:200] + "..."
	}
	line = strings.ToValidUTF8(line, "?") // also a rune the cut split
	if line == "" {
		return fmt.Sprintf("exit code %d", code)
	}
	return fmt.Sprintf("exit code %d: %s", code, line)
}
