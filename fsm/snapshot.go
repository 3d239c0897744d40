package fsm

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

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
	{9, cachestore.TableOutputs, cachestore.IndexID, func() any { return new(cachestore.Output) }, 13,
		func(o any, b []byte) []byte { return encodeOutput(o.(*cachestore.Output), b) },
		func(b []byte, in map[string]string) (any, error) { return decodeOutput(b, in) }},
	{10, cachestore.TableLogs, cachestore.IndexID, func() any { return new(cachestore.LogEntry) }, 14,
		func(o any, b []byte) []byte { return encodeLog(o.(*cachestore.LogEntry), b) },
		func(b []byte, in map[string]string) (any, error) { return decodeLog(b, in) }},
	{11, cachestore.TableUsage, cachestore.IndexID, func() any { return new(cachestore.Usage) }, 0, nil, nil},
}

type snapshot struct{ txn *memdb.Txn }

// Persist implements raft.FSMSnapshot.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.txn); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *snapshot) Release() {}

func writeSnapshot(w io.Writer, txn *memdb.Txn) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	bw.WriteString(snapshotMagic)
	bw.WriteByte(snapshotVersion)
	var lenBuf [binary.MaxVarintLen64]byte
	for _, t := range snapTables {
		it, err := txn.Get(t.table, t.index)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", t.table, err)
		}
		var buf []byte
		for raw := it.Next(); raw != nil; raw = it.Next() {
			tag := t.tag
			var b []byte
			if t.encode != nil {
				buf = t.encode(raw, buf[:0])
				b, tag = buf, t.binTag
			} else if b, err = json.Marshal(raw); err != nil {
				return fmt.Errorf("snapshot %s: %w", t.table, err)
			}
			bw.WriteByte(tag)
			n := binary.PutUvarint(lenBuf[:], uint64(len(b)))
			bw.Write(lenBuf[:n])
			if _, err := bw.Write(b); err != nil {
				return fmt.Errorf("snapshot write: %w", err)
			}
		}
	}
	bw.WriteByte(0)
	return bw.Flush()
}

// ErrBadSnapshot marks a snapshot that cannot be read.
var ErrBadSnapshot = errors.New("bad snapshot")

// maxRecord bounds one record: the largest is an output (1 MiB of stdout,
// base64 in JSON) or a call with 1 MiB of stdin.
const maxRecord = 8 << 20

func readSnapshot(r io.Reader) (*memdb.MemDB, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head := make([]byte, len(snapshotMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrBadSnapshot, err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return nil, fmt.Errorf("%w: not a hyperfunc snapshot", ErrBadSnapshot)
	}
	if v := head[len(snapshotMagic)]; v != snapshotVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads %d", ErrBadSnapshot, v, snapshotVersion)
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
	db, err := memdb.NewMemDB(Schema())
	if err != nil {
		return nil, err
	}
	txn := db.Txn(true)
	defer txn.Abort()
	buf := make([]byte, 0, 4096)
	for {
		tag, err := br.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("%w: truncated (no end marker): %w", ErrBadSnapshot, err)
		}
		if tag == 0 {
			break
		}
		t, ok := byTag[tag]
		if !ok {
			return nil, fmt.Errorf("%w: unknown record tag %d", ErrBadSnapshot, tag)
		}
		n, err := binary.ReadUvarint(br)
		if err != nil || n > maxRecord {
			return nil, fmt.Errorf("%w: record length: %d %v", ErrBadSnapshot, n, err)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, fmt.Errorf("%w: %s record: %w", ErrBadSnapshot, t.table, err)
		}
		var obj any
		if t.make == nil {
			obj, err = t.decode(buf, intern)
		} else {
			obj = t.make()
			err = json.Unmarshal(buf, obj)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s record: %w", ErrBadSnapshot, t.table, err)
		}
		if err := txn.Insert(t.table, obj); err != nil {
			return nil, fmt.Errorf("%w: %s insert: %w", ErrBadSnapshot, t.table, err)
		}
	}
	txn.Commit()
	return db, nil
}
