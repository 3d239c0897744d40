package server

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// Timeouts of the HTTP server. None of them bounds a request's handler:
// sync calls, `get --wait`, blocking queries and `logs --follow` may run
// for hours once their request is read.
const (
	// DefaultBodyReadTimeout bounds the reading of one request body (a
	// 1 MiB stdin at 17 KiB/s at least): a client that trickles its body
	// holds a connection no longer.
	DefaultBodyReadTimeout = 60 * time.Second
	// DefaultIdleTimeout closes keep-alive connections idle for this long.
	DefaultIdleTimeout = 90 * time.Second
	// headerReadTimeout bounds the request line and headers.
	headerReadTimeout = 10 * time.Second
)

// bodyDeadline sets a read deadline for the request's body and clears it
// once the body is read (EOF) or closed, so that the handler itself runs
// without one. http.Server.ReadTimeout cannot do this: its deadline stays
// on the connection while the handler runs, and the server's background
// read then cancels the request's context mid-call. Requests without a
// body get no deadline at all.
func bodyDeadline(timeout time.Duration) gin.HandlerFunc {
	return func(c *gin.Context) {
		r := c.Request
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			c.Next()
			return
		}
		rc := http.NewResponseController(c.Writer)
		if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			c.Next() // not a plain connection (tests' recorders): nothing to bound
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, clear: func() { _ = rc.SetReadDeadline(time.Time{}) }}
		c.Next()
	}
}

type deadlineBody struct {
	io.ReadCloser
	once  sync.Once
	clear func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.once.Do(b.clear)
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	b.once.Do(b.clear)
	return b.ReadCloser.Close()
}
