package fsm

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// Snapshot format: the magic bytes and a version byte, then records of
// [table tag byte][uvarint length][JSON object], then a zero tag. A new
// record kind gets a new tag; a reader refuses versions it does not know.
const (
	snapshotMagic   = "HFSNAP"
	snapshotVersion = 1
)

type snapTable struct {
	tag   byte // JSON records
	table string
	index string
	make  func() any
	// Tables that hold nearly all of a large state have a binary codec
	// and records of their own tag; readers still take the JSON tag.
	binTag byte
	encode func(obj any, buf []byte) []byte
	decode func(b []byte, intern map[string]string) (any, error)
}

// snapTables lists every table in the order they are written; the tags are
// part of the format and never change.
var snapTables = []snapTable{
	{1, TableUsers, IndexID, func() any { return new(User) }, 0, nil, nil},
	{2, TableTokens, IndexID, func() any { return new(Token) }, 0, nil, nil},
	{3, TableFunctions, IndexID, func() any { return new(Function) }, 0, nil, nil},
	{4, TableCalls, IndexID, func() any { return new(Call) }, 12,
		func(o any, b []byte) []byte { return encodeCall(o.(*Call), b) },
		func(b []byte, in map[string]string) (any, error) { return decodeCall(b, in) }},
	{5, TableMembers, IndexID, func() any { return new(Member) }, 0, nil, nil},
	{6, TableOwnerUsage, IndexID, func() any { return new(OwnerUsage) }, 0, nil, nil},
	{7, TableFnStats, IndexID, func() any { return new(FunctionStats) }, 0, nil, nil},
	{8, TableIndex, IndexID, func() any { return new(IndexEntry) }, 0, nil, nil},
	{15, TableStaged, IndexID, func() any { return new(Staged) }, 0, nil, nil},
	// The caches live on disk (cachestore) and are written after the
	// tables, from the disk half's snapshot, under these tags.
	{9, tableOutputs, "", func() any { return new(cachestore.Output) }, 13, nil,
		func(b []byte, in map[string]string) (any, error) { return cachestore.DecodeOutput(b, in) }},
	{10, tableLogs, "", func() any { return new(cachestore.LogEntry) }, 14, nil,
		func(b []byte, in map[string]string) (any, error) { return cachestore.DecodeLog(b, in) }},
	// Usage rows are counted again from the records a restore loads, so
	// they are always the sums of what is stored; older snapshots' rows
	// are read and dropped.
	{11, tableUsage, "", func() any { return new(cachestore.Usage) }, 0, nil, nil},
}

// Pseudo-tables of the snapshot format: records that are not memdb rows.
const (
	tableOutputs = "outputs"
	tableLogs    = "logs"
	tableUsage   = "cache_usage"
)

// binTags maps the disk half's record kinds to their snapshot tags.
var binTags = map[cachestore.RecordKind]byte{
	cachestore.RecordEnded:  12,
	cachestore.RecordOutput: 13,
	cachestore.RecordLog:    14,
}

type snapshot struct {
	store *Store
	txn   *memdb.Txn
	disk  *cachestore.Snapshot
}

// Persist implements raft.FSMSnapshot.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.txn, s.disk); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot. Persist read every page of the
// disk half through its mapping: they are handed back (Trim).
func (s *snapshot) Release() {
	s.disk.Release()
	_ = s.store.Trim()
}

func writeSnapshot(w io.Writer, txn *memdb.Txn, disk *cachestore.Snapshot) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	bw.WriteString(snapshotMagic)
	bw.WriteByte(snapshotVersion)
	var lenBuf [binary.MaxVarintLen64]byte
	record := func(tag byte, b []byte) error {
		bw.WriteByte(tag)
		n := binary.PutUvarint(lenBuf[:], uint64(len(b)))
		bw.Write(lenBuf[:n])
		if _, err := bw.Write(b); err != nil {
			return fmt.Errorf("snapshot write: %w", err)
		}
		return nil
	}
	for _, t := range snapTables {
		if t.index == "" {
			continue // not a memdb table
		}
		it, err := txn.Get(t.table, t.index)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", t.table, err)
		}
		var buf []byte
		for raw := it.Next(); raw != nil; raw = it.Next() {
			tag := t.tag
			var b []byte
			if c, ok := raw.(*Call); ok && c.StdinSize > 0 {
				// A queued call's stdin waits apart (cachestore's
				// stdin.go); the snapshot carries it inside the call's
				// record, as it always did.
				cc := *c
				cc.Stdin = disk.Stdin(txn, c.ID)
				raw = &cc
			}
			if t.encode != nil {
				buf = t.encode(raw, buf[:0])
				b, tag = buf, t.binTag
			} else if b, err = json.Marshal(raw); err != nil {
				return fmt.Errorf("snapshot %s: %w", t.table, err)
			}
			if err := record(tag, b); err != nil {
				return err
			}
		}
	}
	if err := disk.Each(func(kind cachestore.RecordKind, b []byte) error { return record(binTags[kind], b) }); err != nil {
		return fmt.Errorf("snapshot caches: %w", err)
	}
	bw.WriteByte(0)
	return bw.Flush()
}

// ErrBadSnapshot marks a snapshot that cannot be read.
var ErrBadSnapshot = errors.New("bad snapshot")

// maxRecord bounds one record's length prefix. A record is as large as
// what it holds: a call with its stdin (-max-stdin has no upper bound of
// its own; a call of 16 MiB of stdin made every snapshot taken while it
// was queued unreadable at the former bound of 8 MiB, found by a review)
// or an output (-max-stdout). So this bound is only a sanity check on the
// prefix, and the reader grows its buffer as the bytes actually arrive
// (recordChunk at a time): a corrupt prefix on a short file ends at the
// file's end, not in a huge allocation.
const maxRecord = 4 << 30

// recordChunk is how much of a record the reader allocates ahead of the
// bytes it has read.
const recordChunk = 8 << 20

// readSnapshot loads a snapshot into h, a new, empty pair of halves: the
// records of memdb's tables into one write transaction, ended calls and
// the caches into the disk half (cachestore.Loader).
func readSnapshot(r io.Reader, h *halves) error {
	br := bufio.NewReaderSize(r, 1<<20)
	head := make([]byte, len(snapshotMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil {
		return fmt.Errorf("%w: header: %w", ErrBadSnapshot, err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return fmt.Errorf("%w: not a hyperfunc snapshot", ErrBadSnapshot)
	}
	if v := head[len(snapshotMagic)]; v != snapshotVersion {
		return fmt.Errorf("%w: version %d, this build reads %d", ErrBadSnapshot, v, snapshotVersion)
	}
	byTag := map[byte]snapTable{}
	for _, t := range snapTables {
		byTag[t.tag] = t
		if t.binTag != 0 {
			bt := t
			bt.make = nil // marks the binary record kind
			byTag[t.binTag] = bt
		}
	}
	intern := map[string]string{}
	txn := h.mem.Txn(true)
	defer txn.Abort()
	load := cachestore.NewLoader(h.disk, txn)
	defer load.Abort()
	buf := make([]byte, 0, 4096)
	for {
		tag, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("%w: truncated (no end marker): %w", ErrBadSnapshot, err)
		}
		if tag == 0 {
			break
		}
		t, ok := byTag[tag]
		if !ok {
			return fmt.Errorf("%w: unknown record tag %d", ErrBadSnapshot, tag)
		}
		n, err := binary.ReadUvarint(br)
		if err != nil || n > maxRecord {
			return fmt.Errorf("%w: record length: %d %v", ErrBadSnapshot, n, err)
		}
		if buf, err = readRecord(br, buf, n); err != nil {
			return fmt.Errorf("%w: %s record: %w", ErrBadSnapshot, t.table, err)
		}
		var obj any
		if t.make == nil {
			obj, err = t.decode(buf, intern)
		} else {
			obj = t.make()
			err = json.Unmarshal(buf, obj)
		}
		if err != nil {
			return fmt.Errorf("%w: %s record: %w", ErrBadSnapshot, t.table, err)
		}
		if err := restoreRecord(txn, load, t.table, obj); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBadSnapshot, t.table, err)
		}
	}
	if err := load.Close(); err != nil {
		return err
	}
	txn.Commit()
	return nil
}

// readRecord reads n bytes into buf (reused when large enough), growing it
// by at most recordChunk ahead of what was read.
func readRecord(r io.Reader, buf []byte, n uint64) ([]byte, error) {
	buf = buf[:0]
	for uint64(len(buf)) < n {
		m := len(buf)
		want := int(min(n-uint64(m), recordChunk))
		buf = slices.Grow(buf, want)[:m+want]
		if _, err := io.ReadFull(r, buf[m:]); err != nil {
			return buf[:m], err
		}
	}
	return buf, nil
}

// restoreRecord puts one record where it lives now: ended calls and the
// caches on disk, the rest in memdb; usage rows are recounted by the
// loader.
func restoreRecord(txn *memdb.Txn, load *cachestore.Loader, table string, obj any) error {
	switch o := obj.(type) {
	case *Call:
		if Final(o.State) {
			return load.Ended(o.Function, o.Seq, o.ID, encodeCall(o, nil))
		}
		if len(o.Stdin) > 0 {
			if err := load.Stdin(o.ID, o.Stdin); err != nil {
				return err
			}
			o.Stdin = nil
		}
	case *cachestore.Output:
		return load.Output(o)
	case *cachestore.LogEntry:
		return load.Log(o)
	case *cachestore.Usage:
		return nil
	}
	return txn.Insert(table, obj)
}
