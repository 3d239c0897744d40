package fsm

import (
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// Reads take a watch set (which may be nil) so blocking queries can wait on
// exactly what they read.

func first[T any](s *Store, ws memdb.WatchSet, table, index string, args ...any) (*T, error) {
	ch, raw, err := s.ReadTxn().FirstWatch(table, index, args...)
	if err != nil {
		return nil, fmt.Errorf("%s lookup: %w", table, err)
	}
	ws.Add(ch)
	if raw == nil {
		return nil, nil
	}
	return raw.(*T), nil
}

func list[T any](s *Store, ws memdb.WatchSet, table, index string, args ...any) ([]*T, error) {
	it, err := s.ReadTxn().Get(table, index, args...)
	if err != nil {
		return nil, fmt.Errorf("%s list: %w", table, err)
	}
	ws.Add(it.WatchCh())
	var out []*T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*T))
	}
	return out, nil
}

// User reads one user; nil when absent.
func (s *Store) User(ws memdb.WatchSet, name string) (*User, error) {
	return first[User](s, ws, TableUsers, IndexID, name)
}

// Users lists users by name.
func (s *Store) Users(ws memdb.WatchSet) ([]*User, error) {
	return list[User](s, ws, TableUsers, IndexID)
}

// TokenBySecretHash finds the token of a secret's hash.
func (s *Store) TokenBySecretHash(hash string) (*Token, error) {
	return first[Token](s, nil, TableTokens, IndexSecret, hash)
}

// Token reads a token by accessor.
func (s *Store) Token(ws memdb.WatchSet, accessor string) (*Token, error) {
	return first[Token](s, ws, TableTokens, IndexID, accessor)
}

// Tokens lists all tokens.
func (s *Store) Tokens(ws memdb.WatchSet) ([]*Token, error) {
	return list[Token](s, ws, TableTokens, IndexID)
}

// Function reads a function by ID (owner/name).
func (s *Store) Function(ws memdb.WatchSet, id string) (*Function, error) {
	return first[Function](s, ws, TableFunctions, IndexID, id)
}

// FunctionBySecretHash finds the function whose address secret hashes to hash.
func (s *Store) FunctionBySecretHash(hash string) (*Function, error) {
	return first[Function](s, nil, TableFunctions, IndexSecret, hash)
}

// Functions lists the functions of an owner, or all when owner is "".
func (s *Store) Functions(ws memdb.WatchSet, owner string) ([]*Function, error) {
	if owner == "" {
		return list[Function](s, ws, TableFunctions, IndexID)
	}
	return list[Function](s, ws, TableFunctions, IndexOwner, owner)
}

// Call reads one call: from memdb until it ends, then from the disk half.
// A call in flight is the common lookup (the dispatcher, get --wait) and
// needs memdb alone; a miss there is safe to look up on disk without the
// pair lock, since an ending call's disk half is committed before memdb's.
// An ended call changes only when its output rotates out or it is
// forgotten; the watch set then holds the calls table's index row.
func (s *Store) Call(ws memdb.WatchSet, id string) (*Call, error) {
	c, err := first[Call](s, ws, TableCalls, IndexID, id)
	if err != nil || c != nil {
		return c, err
	}
	r, err := s.read()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rec, err := cachestore.EndedRead(r, id)
	if err != nil || rec == nil {
		return nil, err
	}
	s.Index(ws, TableCalls)
	return decodeEnded(id, rec)
}

// CallsOfFunction lists a function's calls, oldest first: the ended ones
// (disk) and those not ended yet (memdb), merged by sequence number.
func (s *Store) CallsOfFunction(ws memdb.WatchSet, fnID string) ([]*Call, error) {
	r, err := s.read()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	recs, err := cachestore.EndedOfFunction(r, fnID, 0, 0)
	if err != nil {
		return nil, err
	}
	it, err := r.Mem.Get(TableCalls, IndexFunction+"_prefix", cachestore.Exact(fnID))
	if err != nil {
		return nil, fmt.Errorf("calls of %s: %w", fnID, err)
	}
	ws.Add(it.WatchCh())
	s.Index(ws, TableCalls)
	intern := map[string]string{}
	out := make([]*Call, 0, len(recs))
	live := it.Next()
	for _, rec := range recs {
		c, err := decodeCall(rec, intern)
		if err != nil {
			return nil, fmt.Errorf("calls of %s: %w", fnID, err)
		}
		for ; live != nil && live.(*Call).Seq < c.Seq; live = it.Next() {
			out = append(out, live.(*Call))
		}
		out = append(out, c)
	}
	for ; live != nil; live = it.Next() {
		out = append(out, live.(*Call))
	}
	return out, nil
}

// Queue returns up to n calls of owner in state, oldest first.
func (s *Store) Queue(ws memdb.WatchSet, owner, state string, n int) ([]*Call, error) {
	it, err := s.ReadTxn().Get(TableCalls, IndexQueue+"_prefix", owner, cachestore.Exact(state))
	if err != nil {
		return nil, fmt.Errorf("queue of %s: %w", owner, err)
	}
	ws.Add(it.WatchCh())
	var out []*Call
	for raw := it.Next(); raw != nil && (n <= 0 || len(out) < n); raw = it.Next() {
		out = append(out, raw.(*Call))
	}
	return out, nil
}

// OwnerUsages lists the queue counters of every owner with calls in flight.
func (s *Store) OwnerUsages(ws memdb.WatchSet) ([]*OwnerUsage, error) {
	return list[OwnerUsage](s, ws, TableOwnerUsage, IndexID)
}

// OwnerUsage reads one owner's counters (zero when absent).
func (s *Store) OwnerUsage(owner string) (OwnerUsage, error) {
	u, err := first[OwnerUsage](s, nil, TableOwnerUsage, IndexID, owner)
	if err != nil || u == nil {
		return OwnerUsage{Owner: owner}, err
	}
	return *u, nil
}

// FunctionStats reads one function's per-state counters.
func (s *Store) FunctionStats(ws memdb.WatchSet, fnID string) (FunctionStats, error) {
	st, err := first[FunctionStats](s, ws, TableFnStats, IndexID, fnID)
	if err != nil || st == nil {
		return FunctionStats{Function: fnID}, err
	}
	return *st, nil
}

// Members lists the servers.
func (s *Store) Members(ws memdb.WatchSet) ([]*Member, error) {
	return list[Member](s, ws, TableMembers, IndexID)
}

// Stdin reads the stdin of a call that has not ended (a copy); nil when
// it has none, or ended.
func (s *Store) Stdin(callID string) ([]byte, error) {
	r, err := s.read()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return cachestore.Stdin(r, callID), nil
}

// Output reads a call's stdout from the output cache (a copy).
func (s *Store) Output(ws memdb.WatchSet, callID string) (*cachestore.Output, error) {
	r, err := s.read()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return cachestore.GetOutput(r, ws, callID)
}

// Logs reads a function's log entries after seq (and at most tail of them).
func (s *Store) Logs(ws memdb.WatchSet, fnID string, after uint64, tail int) ([]*cachestore.LogEntry, error) {
	r, err := s.read()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return cachestore.Logs(r, ws, fnID, after, tail)
}

// CacheUsage reads the exact usage of one cache of a function.
func (s *Store) CacheUsage(kind cachestore.Kind, fnID string) (cachestore.Usage, error) {
	return cachestore.GetUsage(s.ReadTxn(), kind, fnID)
}

// StagedBytes is how many bytes are staged under key (fsm/staged.go).
func (s *Store) StagedBytes(key string) (int64, error) {
	it, err := s.ReadTxn().Get(TableStaged, IndexID+"_prefix", cachestore.Exact(key))
	if err != nil {
		return 0, fmt.Errorf("staged chunks of %q: %w", key, err)
	}
	var n int64
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n += int64(len(raw.(*Staged).Data))
	}
	return n, nil
}

// StagedBefore reports whether any chunk was staged before t.
func (s *Store) StagedBefore(t time.Time) (bool, error) {
	it, err := s.ReadTxn().Get(TableStaged, IndexID)
	if err != nil {
		return false, fmt.Errorf("staged chunks: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if raw.(*Staged).Time.Before(t) {
			return true, nil
		}
	}
	return false, nil
}
