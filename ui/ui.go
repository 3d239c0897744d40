package ui

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/gin-gonic/gin"
)

//go:embed assets
var assets embed.FS

// csp allows the UI's own files and API only: no inline script or style,
// no other origin, no plugins, and no page may frame it (clickjacking).
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Register serves the UI on r under /ui/. api is the whole HTTP API of the
// agent (r itself, usually), through which login checks a token.
func Register(r gin.IRouter, api http.Handler) {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/ui/", http.FileServer(http.FS(sub)))
	g := r.Group("/ui", secureHeaders)
	g.GET("", func(c *gin.Context) { c.Redirect(http.StatusFound, "/ui/") })
	g.POST("/login", login(api))
	g.POST("/logout", logout)
	g.GET("/*path", func(c *gin.Context) { files.ServeHTTP(c.Writer, c.Request) })
	g.HEAD("/*path", func(c *gin.Context) { files.ServeHTTP(c.Writer, c.Request) })
}

// secureHeaders go on every /ui answer.
func secureHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	// The files change with the binary; an old script against a new API
	// would misbehave, so browsers revalidate each time (cheap: 304).
	h.Set("Cache-Control", "no-cache")
}
