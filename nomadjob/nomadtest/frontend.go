package nomadtest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Frontend stands in for the hyperfunc frontend's artifact endpoints, as
// Nomad clients reach them: the shim archive and the stdin of big calls.
type Frontend struct {
	URL        string
	ShimPath   string // e.g. /v1/artifacts/hf-shim.tar.gz
	ShimSHA256 string

	srv     *httptest.Server
	mu      sync.Mutex
	shim    []byte
	stdin   map[string]stdinRec
	fetches map[string]int
	failing map[string]int // path -> 502s still to answer
}

type stdinRec struct {
	key  string
	data []byte
}

// NewFrontend serves shimArchive at shimPath.
func NewFrontend(t interface{ Cleanup(func()) }, shimPath string, shimArchive []byte) *Frontend {
	sum := sha256.Sum256(shimArchive)
	f := &Frontend{
		ShimPath: shimPath, ShimSHA256: hex.EncodeToString(sum[:]),
		shim: shimArchive, stdin: map[string]stdinRec{}, fetches: map[string]int{}, failing: map[string]int{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.URL = f.srv.URL
	t.Cleanup(f.srv.Close)
	return f
}

// PutStdin makes the stdin of a call fetchable with its key.
func (f *Frontend) PutStdin(callID, key string, data []byte) {
	f.mu.Lock()
	f.stdin[callID] = stdinRec{key: key, data: data}
	f.mu.Unlock()
}

// Fetches counts the artifact requests for a path.
func (f *Frontend) Fetches(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetches[path]
}

// FailNext answers the next n requests for path with 502 Bad Gateway, as a
// load balancer in front of the frontends does while one restarts.
func (f *Frontend) FailNext(path string, n int) {
	f.mu.Lock()
	f.failing[path] = n
	f.mu.Unlock()
}

func (f *Frontend) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.fetches[r.URL.Path]++
	fail := f.failing[r.URL.Path] > 0
	if fail {
		f.failing[r.URL.Path]--
	}
	f.mu.Unlock()
	if fail {
		http.Error(w, "no server in the rotation answered", http.StatusBadGateway)
		return
	}
	if r.URL.Path == f.ShimPath {
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write(f.shim)
		return
	}
	if id, ok := strings.CutPrefix(r.URL.Path, "/v1/artifacts/stdin/"); ok {
		f.mu.Lock()
		rec, found := f.stdin[id]
		f.mu.Unlock()
		if !found || subtle.ConstantTimeCompare([]byte(rec.key), []byte(r.URL.Query().Get("key"))) != 1 {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(rec.data)
		return
	}
	http.NotFound(w, r)
}
