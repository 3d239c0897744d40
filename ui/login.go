package ui

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gin-gonic/gin"

	hapi "github.com/hyperfunc/hyperfunc/api"
)

// maxLoginBody bounds POST /ui/login; a token is 64 hex digits.
const maxLoginBody = 4 << 10

type loginRequest struct {
	Token string `json:"token"`
}

func fail(c *gin.Context, code int, msg string) {
	c.AbortWithStatusJSON(code, hapi.ErrorBody{Error: msg})
}

// login is POST /ui/login, body {"token": "<secret>"} with the
// api.HeaderUI header (so a cross-site form cannot log a browser into
// someone else's session). It asks the API who the token is
// (GET /v1/tokens/self) and, when the API knows it, answers that token's
// JSON and sets the session cookie; the API's own answer (403, 503...)
// otherwise.
func login(api http.Handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.GetHeader(hapi.HeaderUI) == "" {
			fail(c, http.StatusForbidden, "login needs the "+hapi.HeaderUI+" header (the UI sends it)")
			return
		}
		var req loginRequest
		dec := json.NewDecoder(io.LimitReader(c.Request.Body, maxLoginBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			fail(c, http.StatusBadRequest, "body must be {\"token\": \"<secret>\"}: "+err.Error())
			return
		}
		req.Token = strings.TrimSpace(req.Token)
		if req.Token == "" || len(req.Token) > 512 || strings.ContainsAny(req.Token, ";,\" \t\r\n") {
			fail(c, http.StatusBadRequest, "token is empty or malformed")
			return
		}
		check, err := http.NewRequestWithContext(c.Request.Context(), http.MethodGet, "/v1/tokens/self", nil)
		if err != nil {
			fail(c, http.StatusInternalServerError, err.Error())
			return
		}
		check.RemoteAddr = c.Request.RemoteAddr
		check.Header.Set(hapi.HeaderToken, req.Token)
		// In process, through the whole API chain (readiness, forwarding
		// to the leader, authentication): the answer is exactly the API's,
		// and the UI needs no access to the state of its own.
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, check)
		if rec.Code != http.StatusOK {
			c.Data(rec.Code, "application/json", rec.Body.Bytes())
			return
		}
		http.SetCookie(c.Writer, sessionCookie(c, req.Token, 0))
		c.Data(http.StatusOK, "application/json", rec.Body.Bytes())
	}
}

// logout is POST /ui/logout: the cookie is replaced by an expired one.
// It needs the UI header too, so another site cannot log a user out.
func logout(c *gin.Context) {
	if c.GetHeader(hapi.HeaderUI) == "" {
		fail(c, http.StatusForbidden, "logout needs the "+hapi.HeaderUI+" header (the UI sends it)")
		return
	}
	http.SetCookie(c.Writer, sessionCookie(c, "", -1))
	c.Status(http.StatusNoContent)
}

// sessionCookie holds the token for the API's paths only. Without MaxAge
// it lasts as long as the browser session.
func sessionCookie(c *gin.Context, token string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: hapi.UICookie, Value: token, Path: "/v1/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(c.Request),
	}
}

// overTLS reports whether the browser reached us over TLS: directly, or
// through the TLS-terminating proxy docs/SECURITY.md recommends (which
// says so in X-Forwarded-Proto). Trusting the header can only add Secure.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
