package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/hyperfunc/hyperfunc/api"
)

// Identity is who a request acts as.
type Identity struct {
	User     string
	Admin    bool
	ReadOnly bool
	Accessor string
}

// DefaultUser owns everything when ACLs are off (the -dev agent).
const DefaultUser = "default"

const identityKey = "hyperfunc.identity"

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// tokenOf reads the bearer token of a request.
func tokenOf(r *http.Request) string {
	if t := r.Header.Get("X-Hyper-Token"); t != "" {
		return t
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	// The web UI's session: the cookie counts only beside the UI's header
	// (api.HeaderUI says why).
	if r.Header.Get(api.HeaderUI) != "" {
		if ck, err := r.Cookie(api.UICookie); err == nil {
			return ck.Value
		}
	}
	return ""
}

// authenticate resolves the token to an identity. Tokens are looked up by
// the SHA-256 of their secret, so the stored hashes never meet the secret
// itself and a lookup's timing says nothing about it.
func (s *Server) authenticate(c *gin.Context) {
	if !s.cfg.ACL {
		c.Set(identityKey, &Identity{User: DefaultUser, Admin: true})
		return
	}
	secret := tokenOf(c.Request)
	if secret == "" {
		writeError(c, fmt.Errorf("%w: missing token (set HYPER_TOKEN or the Authorization header)", ErrUnauthorized))
		return
	}
	tok, err := s.store.TokenBySecretHash(hashSecret(secret))
	if err != nil {
		writeError(c, err)
		return
	}
	if tok == nil {
		writeError(c, fmt.Errorf("%w: token not found", ErrForbidden))
		return
	}
	id := &Identity{User: tok.User, ReadOnly: tok.ReadOnly, Accessor: tok.AccessorID}
	if u, _ := s.store.User(nil, tok.User); u != nil {
		id.Admin = u.Admin
	}
	if id.ReadOnly && c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
		writeError(c, fmt.Errorf("%w: read-only token", ErrForbidden))
		return
	}
	c.Set(identityKey, id)
}

func identity(c *gin.Context) *Identity {
	return c.MustGet(identityKey).(*Identity)
}

func requireAdmin(c *gin.Context) {
	if !identity(c).Admin {
		writeError(c, fmt.Errorf("%w: admin token required", ErrForbidden))
	}
}

// headerClusterKey carries the internal token of server-to-server calls,
// derived from the cluster key (clusterAuth), never the key itself.
const headerClusterKey = "X-Hyper-Cluster-Key"

// requireClusterKey guards the server-to-server routes. Every server has a
// cluster key (a standalone one generates its own), so these routes are
// never open.
func (s *Server) requireClusterKey(c *gin.Context) {
	if !s.auth.checkHTTPToken(c.GetHeader(headerClusterKey)) {
		writeError(c, fmt.Errorf("%w: a server-to-server route: wrong or missing cluster key", ErrForbidden))
	}
}
