package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/gin-gonic/gin"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/fsm"
)

func (s *Server) functionRoutes(g *gin.RouterGroup) {
	w, r := s.toLeader(true), s.toLeader(false)
	g.POST("/functions", w, s.authenticate, s.createFunction)
	g.GET("/functions", r, s.authenticate, s.listFunctions)
	g.GET("/functions/:name", r, s.authenticate, s.getFunction)
	g.POST("/functions/:name", w, s.authenticate, s.updateFunction)
	g.DELETE("/functions/:name", w, s.authenticate, s.deleteFunction)
	g.GET("/functions/:name/status", r, s.authenticate, s.functionStatus)
	isSync := func(c *gin.Context) bool { return c.Query("sync") == "true" }
	g.POST("/functions/:name/call", s.checkStdinLength, s.toLeaderUnlessAsyncCall(isSync, s.knownOwnFunction), s.authenticate, s.callFunction)
	g.GET("/functions/:name/logs", r, s.authenticate, s.functionLogs)
}

func newSecret() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// checkImage accepts what `docker pull` accepts as an image reference
// (lowercase repository, optional registry, tag and digest) and answers
// why not otherwise. Whether the image exists is the call's business: a
// missing image fails the call, it does not refuse the function.
func checkImage(img string) error {
	if img == "" {
		return badRequest("an image is required")
	}
	if len(img) > 512 {
		return badRequest("invalid image: longer than 512 bytes")
	}
	if _, err := reference.ParseNormalizedNamed(img); err != nil {
		return badRequest("invalid image %q: %v", img, err)
	}
	return nil
}

// checkWorkdir accepts an absolute path, as `docker run -w` requires; ""
// keeps the image's own.
func checkWorkdir(dir string) error {
	switch {
	case dir == "":
		return nil
	case len(dir) > 4096:
		return badRequest("invalid workdir: longer than 4096 bytes")
	case strings.ContainsRune(dir, 0):
		return badRequest("invalid workdir: contains a NUL byte")
	case !path.IsAbs(dir):
		return badRequest("invalid workdir %q: the working directory must be an absolute path", dir)
	}
	return nil
}

func validateArgs(what string, args []string) error {
	if len(args) > 1024 {
		return badRequest("%s has more than 1024 arguments", what)
	}
	for _, a := range args {
		if strings.ContainsRune(a, 0) {
			return badRequest("%s contains a NUL byte", what)
		}
	}
	return nil
}

func validateSpec(sp *api.FunctionSpec) error {
	if !validName(sp.Name) {
		return badRequest("invalid function name %q: use 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit", sp.Name)
	}
	if err := checkImage(sp.Image); err != nil {
		return err
	}
	if err := checkWorkdir(sp.Workdir); err != nil {
		return err
	}
	if sp.Size == "" {
		sp.Size = api.DefaultSize
	}
	if _, ok := api.Sizes[sp.Size]; !ok {
		return badRequest("unknown size %q: use one of s1..s4, m1..m3, l1..l3", sp.Size)
	}
	if sp.Timeout < 0 {
		return badRequest("timeout must not be negative")
	}
	if err := validateArgs("command", sp.Command); err != nil {
		return err
	}
	if err := validateArgs("entrypoint", sp.Entrypoint); err != nil {
		return err
	}
	if err := validateUser(sp.User); err != nil {
		return err
	}
	if err := validateWarm(sp.Warm); err != nil {
		return err
	}
	if len(sp.Labels) > 64 {
		return badRequest("more than 64 labels")
	}
	for k := range sp.Labels {
		if k == "" || len(k) > 128 {
			return badRequest("invalid label key %q", k)
		}
	}
	return validateEnv(sp.Env)
}

func validateWarm(n int) error {
	if n < 0 || n > api.MaxWarm {
		return badRequest("invalid warm %d: keep 0 to %d pre-started sandboxes", n, api.MaxWarm)
	}
	return nil
}

// validUser is Docker's --user: a name or a uid, optionally ":" a group
// name or gid.
var validUser = regexp.MustCompile(`^([a-z_][a-z0-9_.-]{0,31}|[0-9]{1,10})(:([a-z_][a-z0-9_.-]{0,31}|[0-9]{1,10}))?$`)

func validateUser(u string) error {
	if u != "" && !validUser.MatchString(u) {
		return badRequest("invalid user %q: use a name or uid the image knows, optionally :group (e.g. 1000:1000, root)", u)
	}
	return nil
}

// toAPIFunction renders a stored function; address is set only when the
// caller just created or refreshed the secret.
func toAPIFunction(f *fsm.Function, address string) *api.Function {
	return &api.Function{
		Name: f.Name, Owner: f.Owner, Image: f.Image, Command: f.Command, Entrypoint: f.Entrypoint,
		Workdir: f.Workdir, Env: f.Env, Labels: f.Labels, Size: f.Size,
		Resources: api.Resources{CPU: f.CPU, MemoryMB: f.MemoryMB}, Timeout: f.Timeout, User: f.User,
		Warm: f.Warm, Address: address, CreatedAt: f.CreatedAt, UpdatedAt: f.UpdatedAt,
		CreateIndex: f.CreateIndex, ModifyIndex: f.ModifyIndex,
	}
}

func (s *Server) address(name, secret string) string {
	return strings.TrimRight(s.cfg.PublicURL, "/") + "/call/" + name + "/" + secret
}

// register tells the executor about a function before the state changes,
// so that a function that exists in the state can always be called.
func (s *Server) register(c *gin.Context, f *fsm.Function) error {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 30*time.Second)
	defer cancel()
	if err := s.exec.Register(ctx, s.execFunction(f)); err != nil {
		return fmt.Errorf("%w: the %s executor refused the function: %v", ErrUnavailable, s.exec.Name(), err)
	}
	return nil
}

func (s *Server) createFunction(c *gin.Context) {
	var sp api.FunctionSpec
	if err := bindJSON(c, &sp); err != nil {
		writeError(c, err)
		return
	}
	if err := validateSpec(&sp); err != nil {
		writeError(c, err)
		return
	}
	id := identity(c)
	res := api.Sizes[sp.Size]
	secret := newSecret()
	t := now()
	f := &fsm.Function{
		ID: fsm.FunctionID(id.User, sp.Name), Owner: id.User, Name: sp.Name, Image: sp.Image,
		Command: sp.Command, Entrypoint: sp.Entrypoint, Workdir: sp.Workdir, Env: sp.Env, Labels: sp.Labels,
		Size: sp.Size, CPU: res.CPU, MemoryMB: res.MemoryMB, Timeout: sp.Timeout, User: sp.User,
		Warm: sp.Warm, SecretHash: hashSecret(secret), CreatedAt: t, UpdatedAt: t,
	}
	if existing, _ := s.store.Function(nil, f.ID); existing != nil {
		writeError(c, fmt.Errorf("function %q %w", sp.Name, fsm.ErrExists))
		return
	}
	if err := s.register(c, f); err != nil {
		writeError(c, err)
		return
	}
	_, idx, err := s.raftApply(fsm.FunctionUpsertType, &fsm.FunctionUpsertRequest{Function: f, Create: true, MaxPerOwner: s.cfg.MaxFunctions})
	if err != nil {
		writeError(c, err)
		return
	}
	f.CreateIndex, f.ModifyIndex = idx, idx
	c.JSON(http.StatusCreated, toAPIFunction(f, s.address(f.Name, secret)))
}

// ownFunction finds a function of the caller by name; another user's
// function is "not found", so names do not leak across users.
func (s *Server) ownFunction(c *gin.Context, ws memdb.WatchSet) (*fsm.Function, error) {
	name := c.Param("name")
	if !validName(name) {
		return nil, badRequest("invalid function name %q", name)
	}
	f, err := s.store.Function(ws, fsm.FunctionID(identity(c).User, name))
	if err != nil {
		return nil, err
	}
	if f == nil {
		return nil, fmt.Errorf("function %q %w", name, fsm.ErrNotFound)
	}
	return f, nil
}

func (s *Server) getFunction(c *gin.Context) {
	s.blocking(c, func(ws memdb.WatchSet) (uint64, any, error) {
		f, err := s.ownFunction(c, ws)
		if err != nil {
			return 0, nil, err
		}
		return s.store.Index(ws, fsm.TableFunctions), toAPIFunction(f, ""), nil
	})
}

// listFunctions takes `hyper func ls -f` filters: name=<prefix> and
// label=<key>=<value> (or label=<key>); ?stats=true adds each function's
// calls per state; ?limit=N (at most 1000) with ?after=<name> pages by name.
func (s *Server) listFunctions(c *gin.Context) {
	names := c.QueryArray("name")
	labels := c.QueryArray("label")
	stats := c.Query("stats") == "true"
	after := c.Query("after")
	limit, err := pageLimit(c)
	if err != nil {
		writeError(c, err)
		return
	}
	s.blocking(c, func(ws memdb.WatchSet) (uint64, any, error) {
		fs, err := s.store.Functions(ws, identity(c).User)
		if err != nil {
			return 0, nil, err
		}
		out := []*api.Function{}
		for _, f := range fs {
			if f.Name > after && matchFilters(f, names, labels) {
				out = append(out, toAPIFunction(f, ""))
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		if limit > 0 && len(out) > limit {
			out = out[:limit]
		}
		if !stats {
			return s.store.Index(ws, fsm.TableFunctions), out, nil
		}
		for _, f := range out {
			st, err := s.store.FunctionStats(ws, fsm.FunctionID(f.Owner, f.Name))
			if err != nil {
				return 0, nil, err
			}
			f.Stats = toAPIStatus(f.Name, st)
		}
		return s.store.Index(ws, fsm.TableFunctions, fsm.TableCalls), out, nil
	})
}

func matchFilters(f *fsm.Function, names, labels []string) bool {
	for _, n := range names {
		if !strings.HasPrefix(f.Name, n) {
			return false
		}
	}
	for _, l := range labels {
		k, v, hasValue := strings.Cut(l, "=")
		got, ok := f.Labels[k]
		if !ok || (hasValue && got != v) {
			return false
		}
	}
	return true
}

func (s *Server) updateFunction(c *gin.Context) {
	var u api.FunctionUpdate
	if err := bindJSON(c, &u); err != nil {
		writeError(c, err)
		return
	}
	old, err := s.ownFunction(c, nil)
	if err != nil {
		writeError(c, err)
		return
	}
	f := *old
	if u.Image != nil {
		if err := checkImage(*u.Image); err != nil {
			writeError(c, err)
			return
		}
		f.Image = *u.Image
	}
	if u.Command != nil {
		if err := validateArgs("command", u.Command); err != nil {
			writeError(c, err)
			return
		}
		f.Command = u.Command
	}
	if u.Size != nil {
		res, ok := api.Sizes[*u.Size]
		if !ok {
			writeError(c, badRequest("unknown size %q: use one of s1..s4, m1..m3, l1..l3", *u.Size))
			return
		}
		f.Size, f.CPU, f.MemoryMB = *u.Size, res.CPU, res.MemoryMB
	}
	if u.User != nil {
		if err := validateUser(*u.User); err != nil {
			writeError(c, err)
			return
		}
		f.User = *u.User
	}
	if u.Warm != nil {
		if err := validateWarm(*u.Warm); err != nil {
			writeError(c, err)
			return
		}
		f.Warm = *u.Warm
	}
	if u.Timeout != nil {
		if *u.Timeout < 0 {
			writeError(c, badRequest("timeout must not be negative"))
			return
		}
		f.Timeout = *u.Timeout
	}
	if len(u.Env) > 0 {
		env := make(map[string]string, len(f.Env)+len(u.Env))
		for k, v := range f.Env {
			env[k] = v
		}
		for k, v := range u.Env {
			env[k] = v
		}
		if err := validateEnv(env); err != nil {
			writeError(c, err)
			return
		}
		f.Env = env
	}
	address := ""
	if u.Refresh {
		secret := newSecret()
		f.SecretHash = hashSecret(secret)
		address = s.address(f.Name, secret)
	}
	f.UpdatedAt = now()
	if err := s.register(c, &f); err != nil {
		writeError(c, err)
		return
	}
	_, idx, err := s.raftApply(fsm.FunctionUpsertType, &fsm.FunctionUpsertRequest{Function: &f})
	if err != nil {
		writeError(c, err)
		return
	}
	f.ModifyIndex = idx
	c.JSON(http.StatusOK, toAPIFunction(&f, address))
}

func (s *Server) deleteFunction(c *gin.Context) {
	f, err := s.ownFunction(c, nil)
	if err != nil {
		writeError(c, err)
		return
	}
	if _, _, err := s.raftApply(fsm.FunctionDeleteType, &fsm.FunctionDeleteRequest{ID: f.ID, Time: now()}); err != nil {
		writeError(c, err)
		return
	}
	// The function is gone from the state; what the executor kept for it
	// is garbage now, so a failure here is logged, not returned.
	ctx, cancel := context.WithTimeout(c.Request.Context(), 30*time.Second)
	defer cancel()
	if err := s.exec.Deregister(ctx, s.execFunction(f)); err != nil {
		s.log.Warn("executor deregistration failed", "function", f.ID, "error", err)
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) functionStatus(c *gin.Context) {
	s.blocking(c, func(ws memdb.WatchSet) (uint64, any, error) {
		f, err := s.ownFunction(c, ws)
		if err != nil {
			return 0, nil, err
		}
		return s.statusOf(ws, f)
	})
}

func (s *Server) statusOf(ws memdb.WatchSet, f *fsm.Function) (uint64, any, error) {
	st, err := s.store.FunctionStats(ws, f.ID)
	if err != nil {
		return 0, nil, err
	}
	return s.store.Index(ws, fsm.TableCalls), toAPIStatus(f.Name, st), nil
}

func toAPIStatus(name string, st fsm.FunctionStats) *api.FunctionStatus {
	return &api.FunctionStatus{
		Function: name, Pending: st.Pending, Running: st.Running,
		Finished: st.Finished, Failed: st.Failed, Canceled: st.Canceled,
	}
}
