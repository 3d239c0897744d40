package cachestore

import (
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// LogEntry is one event of a function's log.
type LogEntry struct {
	Function string
	Seq      uint64
	Time     time.Time
	CallID   string
	Kind     string
	Text     string
}

// logEntryOverhead counts the rendered timestamp and separators of a line,
// so that Size approximates the bytes a reader receives.
const logEntryOverhead = 40

// KindCall is the entry of an accepted call. It stands for two lines of
// the seed's log format, "[CALL] CallId: <id>, ShortStdin: ..." and
// "[PENDING] CallId: <id>", which always come together: one entry instead
// of two keeps a million queued calls a third lighter. Readers render both
// (Lines); the size counts both.
const KindCall = "CALL"

// KindPending is the second line a KindCall entry stands for.
const KindPending = "PENDING"

// Size is what the entry counts against its function's log cap.
func (e *LogEntry) Size() int64 {
	n := int64(logEntryOverhead + len(e.CallID) + len(e.Kind) + len(e.Text))
	if e.Kind == KindCall {
		n += int64(logEntryOverhead + len(e.CallID) + len(KindPending))
	}
	return n
}

// Lines returns the entry as the lines of the seed's format it stands for:
// kind and text of each.
func (e *LogEntry) Lines() [][2]string {
	if e.Kind == KindCall {
		return [][2]string{{KindCall, e.Text}, {KindPending, ""}}
	}
	return [][2]string{{e.Kind, e.Text}}
}

func logsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: TableLogs,
		Indexes: map[string]*memdb.IndexSchema{
			// (function, seq) is unique, so it is the primary key.
			IndexID: functionSeqIndex(IndexID,
				func(e *LogEntry) string { return e.Function }, func(e *LogEntry) uint64 { return e.Seq }),
		},
	}
}

// AppendLog adds an entry and rotates the function's oldest entries out
// until its log holds at most limit bytes; it returns those that rotated.
func AppendLog(txn *memdb.Txn, e *LogEntry, limit int64) ([]*LogEntry, error) {
	if err := txn.Insert(TableLogs, e); err != nil {
		return nil, fmt.Errorf("insert log entry: %w", err)
	}
	u, err := addUsage(txn, KindLog, e.Function, e.Size(), 1)
	if err != nil {
		return nil, err
	}
	var rotated []*LogEntry
	for u.Bytes > limit {
		old, err := OldestLog(txn, e.Function)
		if err != nil {
			return nil, err
		}
		if old == nil {
			return nil, fmt.Errorf("log usage of %s says %d bytes but no entry is left", e.Function, u.Bytes)
		}
		if err := txn.Delete(TableLogs, old); err != nil {
			return nil, fmt.Errorf("rotate log entry: %w", err)
		}
		if u, err = addUsage(txn, KindLog, e.Function, -old.Size(), -1); err != nil {
			return nil, err
		}
		rotated = append(rotated, old)
	}
	return rotated, nil
}

// OldestLog is the function's oldest log entry still in the cache.
func OldestLog(txn *memdb.Txn, function string) (*LogEntry, error) {
	raw, err := txn.First(TableLogs, IndexID+"_prefix", Exact(function))
	if err != nil {
		return nil, fmt.Errorf("oldest log entry of %s: %w", function, err)
	}
	if raw == nil {
		return nil, nil
	}
	return raw.(*LogEntry), nil
}

// Logs returns the function's entries with Seq > after, oldest first, and
// at most the last tail of them when tail > 0. The watch set fires when the
// function's log changes.
func Logs(txn *memdb.Txn, ws memdb.WatchSet, function string, after uint64, tail int) ([]*LogEntry, error) {
	if tail > 0 {
		it, err := txn.GetReverse(TableLogs, IndexID+"_prefix", Exact(function))
		if err != nil {
			return nil, fmt.Errorf("logs of %s: %w", function, err)
		}
		ws.Add(it.WatchCh())
		var out []*LogEntry
		for raw := it.Next(); raw != nil && len(out) < tail; raw = it.Next() {
			e := raw.(*LogEntry)
			if e.Seq <= after {
				break
			}
			out = append(out, e)
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
		return out, nil
	}
	it, err := txn.LowerBound(TableLogs, IndexID, function, after+1)
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", function, err)
	}
	// LowerBound's iterator does not carry a watch channel for the prefix;
	// watch the prefix separately so followers wake on appends.
	wch, err := txn.Get(TableLogs, IndexID+"_prefix", Exact(function))
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", function, err)
	}
	ws.Add(wch.WatchCh())
	var out []*LogEntry
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*LogEntry)
		if e.Function != function {
			break
		}
		out = append(out, e)
	}
	return out, nil
}

// RestoreLog inserts an entry as read from a snapshot.
func RestoreLog(txn *memdb.Txn, e *LogEntry) error {
	return txn.Insert(TableLogs, e)
}
