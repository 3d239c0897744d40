package server

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/gin-gonic/gin"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/api"
	"github.com/hyperfunc/hyperfunc/fsm"
)

// maxPage bounds one page of a list; the web UI asks for 50.
const maxPage = 1000

// pageLimit reads ?limit=N, 0 to maxPage; 0 (or none) means no limit.
func pageLimit(c *gin.Context) (int, error) {
	v := c.Query("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxPage {
		return 0, badRequest("limit must be a number from 0 to %d: %q", maxPage, v)
	}
	return n, nil
}

// callQuery is what GET /v1/calls filters on: ?function=<name> (else all
// the caller's functions, then ?state= is required), ?state=<public
// state> (repeatable), ?order=desc (newest first; default oldest first),
// ?limit=N (at most 1000; 0 or absent is all, for a function only), and a
// cursor: ?before=<call id> with desc, ?after=<call id> otherwise.
type callQuery struct {
	fnID   string
	owner  string
	states []string // stored states (PENDING also matches STARTING)
	desc   bool
	limit  int
	cursor uint64 // the Seq of the cursor call; 0: from the start
}

// storedStates maps a public state to the stored ones it shows.
var storedStates = map[string][]string{
	api.StatePending:  {fsm.StatePending, fsm.StateStarting},
	api.StateRunning:  {fsm.StateRunning},
	api.StateFinished: {fsm.StateFinished},
	api.StateFailed:   {fsm.StateFailed},
	api.StateCanceled: {fsm.StateCanceled},
}

func (s *Server) parseCallQuery(c *gin.Context) (*callQuery, error) {
	q := &callQuery{owner: identity(c).User, desc: c.Query("order") == "desc"}
	if o := c.Query("order"); o != "" && o != "asc" && o != "desc" {
		return nil, badRequest("order must be asc or desc: %q", o)
	}
	if name, ok := c.GetQuery("function"); ok {
		if !validName(name) {
			return nil, badRequest("invalid function name %q", name)
		}
		q.fnID = fsm.FunctionID(q.owner, name)
	}
	for _, st := range c.QueryArray("state") {
		ss, ok := storedStates[st]
		if !ok {
			return nil, badRequest("unknown state %q: use PENDING, RUNNING, FINISHED, FAILED or CANCELED", st)
		}
		for _, st := range ss {
			if !slices.Contains(q.states, st) { // state=X twice lists X once
				q.states = append(q.states, st)
			}
		}
	}
	if q.fnID == "" && len(q.states) == 0 {
		return nil, badRequest("function=<name> or state=<state> is required")
	}
	var err error
	if q.limit, err = pageLimit(c); err != nil {
		return nil, err
	}
	if q.fnID == "" && q.limit == 0 {
		q.limit = maxPage // across functions a list is always a page
	}
	before, after := c.Query("before"), c.Query("after")
	if before != "" && !q.desc || after != "" && q.desc {
		return nil, badRequest("use before=<call id> with order=desc and after=<call id> without")
	}
	if id := before + after; id != "" {
		call, err := s.store.Call(nil, id)
		if err != nil {
			return nil, err
		}
		if call == nil || call.Owner != q.owner {
			return nil, fmt.Errorf("cursor call %q %w", id, fsm.ErrNotFound)
		}
		q.cursor = call.Seq
	}
	return q, nil
}

// beyond reports whether a call lies past the cursor in the walk's order.
func (q *callQuery) beyond(c *fsm.Call) bool {
	if q.cursor == 0 {
		return true
	}
	if q.desc {
		return c.Seq < q.cursor
	}
	return c.Seq > q.cursor
}

// read answers one page of calls and the index to block on.
func (s *Server) readCalls(ws memdb.WatchSet, q *callQuery) (uint64, []*api.Call, error) {
	var page []*fsm.Call
	full := func() bool { return q.limit > 0 && len(page) >= q.limit }
	if q.fnID != "" {
		err := s.store.WalkCallsOfFunction(ws, q.fnID, q.desc, func(c *fsm.Call) bool {
			if q.beyond(c) && (len(q.states) == 0 || slices.Contains(q.states, c.State)) {
				page = append(page, c)
			}
			return !full()
		})
		if err != nil {
			return 0, nil, err
		}
	} else {
		// One walk per stored state, each cut to the limit, merged in
		// acceptance order and cut again.
		for _, st := range q.states {
			n := 0
			err := s.store.WalkCallsInState(ws, q.owner, st, q.desc, func(c *fsm.Call) bool {
				if q.beyond(c) {
					page = append(page, c)
					n++
				}
				return q.limit == 0 || n < q.limit
			})
			if err != nil {
				return 0, nil, err
			}
		}
		slices.SortFunc(page, func(a, b *fsm.Call) int {
			if q.desc {
				a, b = b, a
			}
			return cmp.Compare(a.Seq, b.Seq)
		})
		if q.limit > 0 && len(page) > q.limit {
			page = page[:q.limit]
		}
	}
	out := make([]*api.Call, 0, len(page))
	for _, c := range page {
		out = append(out, toAPICall(c))
	}
	return s.store.Index(ws, fsm.TableCalls), out, nil
}

// listCalls is GET /v1/calls (callQuery), a blocking query.
func (s *Server) listCalls(c *gin.Context) {
	q, err := s.parseCallQuery(c)
	if err != nil {
		writeError(c, err)
		return
	}
	s.blocking(c, func(ws memdb.WatchSet) (uint64, any, error) {
		return s.readCalls(ws, q)
	})
}
