package cachestore

import (
	"encoding/binary"
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	bolt "go.etcd.io/bbolt"
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

// AppendLog adds an entry and rotates the function's oldest entries out
// until its log is within limit bytes and MaxEntries; it returns those that
// rotated.
func AppendLog(t *Txn, e *LogEntry, limit int64) ([]*LogEntry, error) {
	tx, err := t.diskTx()
	if err != nil {
		return nil, err
	}
	b, err := putLog(tx, e)
	if err != nil {
		return nil, err
	}
	u, err := addUsage(t.Txn, KindLog, e.Function, e.Size(), 1)
	if err != nil {
		return nil, err
	}
	var rotated []*LogEntry
	for u.over(limit) {
		k, v := b.Cursor().First()
		if k == nil {
			return nil, fmt.Errorf("log usage of %s says %d bytes but no entry is left", e.Function, u.Bytes)
		}
		old, err := DecodeLog(v, nil)
		if err != nil {
			return nil, fmt.Errorf("oldest log entry of %s: %w", e.Function, err)
		}
		if err := b.Delete(k); err != nil {
			return nil, fmt.Errorf("rotate log entry: %w", err)
		}
		if u, err = addUsage(t.Txn, KindLog, e.Function, -old.Size(), -1); err != nil {
			return nil, err
		}
		rotated = append(rotated, old)
	}
	return rotated, nil
}

// OldestLogSeq is the sequence number of the function's oldest log entry
// still in the cache; ok is false when it has none.
func OldestLogSeq(t *Txn, function string) (seq uint64, ok bool, err error) {
	tx, err := t.diskTx()
	if err != nil {
		return 0, false, err
	}
	b, err := bucket(tx, function, bucketLogs, false)
	if err != nil || b == nil {
		return 0, false, err
	}
	k, _ := b.Cursor().First()
	if k == nil {
		return 0, false, nil
	}
	return binary.BigEndian.Uint64(k), true, nil
}

// Logs returns the function's entries with Seq > after, oldest first, and
// at most the last tail of them when tail > 0. The watch set fires when the
// function's log changes.
func Logs(r *Read, ws memdb.WatchSet, function string, after uint64, tail int) ([]*LogEntry, error) {
	_, ch, err := usageWatch(r.Mem, KindLog, function)
	if err != nil {
		return nil, err
	}
	ws.Add(ch)
	b, err := bucket(r.disk, function, bucketLogs, false)
	if err != nil || b == nil {
		return nil, err
	}
	intern := map[string]string{}
	c := b.Cursor()
	var out []*LogEntry
	if tail > 0 {
		for k, v := c.Last(); k != nil && len(out) < tail; k, v = c.Prev() {
			if binary.BigEndian.Uint64(k) <= after {
				break
			}
			e, err := DecodeLog(v, intern)
			if err != nil {
				return nil, fmt.Errorf("logs of %s: %w", function, err)
			}
			out = append(out, e)
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
		return out, nil
	}
	for k, v := c.Seek(seqKey(after + 1)); k != nil; k, v = c.Next() {
		e, err := DecodeLog(v, intern)
		if err != nil {
			return nil, fmt.Errorf("logs of %s: %w", function, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// putLog writes a log entry; it answers the function's log bucket.
func putLog(tx *bolt.Tx, e *LogEntry) (*bolt.Bucket, error) {
	b, err := bucket(tx, e.Function, bucketLogs, true)
	if err != nil {
		return nil, err
	}
	if err := b.Put(seqKey(e.Seq), EncodeLog(e, nil)); err != nil {
		return nil, fmt.Errorf("put log entry: %w", err)
	}
	return b, nil
}
