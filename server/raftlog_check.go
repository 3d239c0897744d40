package server

// What raftlog.go's open checks and repairs in a WAL before raft reads it:
// the rotation a stop interrupted (finishRotation), and segments that
// cannot be read (checkSegments), refused with what to do.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// finishRotation completes a segment rotation that a stop interrupted, before
// raft-wal opens the WAL. An append that fills the tail segment seals its
// file (index block and commit, synced) before it returns, and raft-wal
// records the seal in its meta store and creates the next segment later, in
// the background. A Close that comes first (a server stopped right after
// such an append) or a kill in between leaves the meta store naming a
// sealed file as the unsealed tail, and raft-wal (v0.4.2 too) recovers it
// as a tail every append to fails with "segment is sealed", at every start:
// a follower that cannot store what it is sent, a leader that steps down at
// its first write. So when the tail file is sealed and its index block
// matches the entries its commits hold, the meta store records it as
// sealed, with the rotation's next segment, as the rotation would have
// (raft-wal creates that segment's file at open). A sealed tail whose index
// block does not match is refused with what to do.
func finishRotation(dir string, meta *metadb.BoltMetaDB, segmentBytes int, log hclog.Logger) error {
	ps, err := meta.Load(dir)
	if err != nil {
		return fmt.Errorf("raft log %s: %w", dir, err)
	}
	n := len(ps.Segments)
	if n == 0 || !ps.Segments[n-1].SealTime.IsZero() {
		return nil
	}
	tail := ps.Segments[n-1]
	sw, err := segment.NewFiler(dir, walfs.New()).RecoverTail(tail)
	if err != nil {
		return nil // wal.Open recovers it (a missing file) or reports it
	}
	defer sw.Close()
	sealed, indexStart, err := sw.Sealed()
	if err != nil || !sealed {
		return nil
	}
	last := sw.LastIndex()
	name := segment.FileName(tail)
	ofs, isW := sw.(interface {
		OffsetForFrame(uint64) (uint32, error)
	})
	ok := isW && last >= tail.BaseIndex && last >= tail.MinIndex
	if ok {
		ok, err = indexMatches(filepath.Join(dir, name), indexStart, tail.BaseIndex, max(tail.BaseIndex, tail.MinIndex), last, ofs.OffsetForFrame)
		if err != nil {
			return fmt.Errorf("raft log %s: %s: %w", dir, name, err)
		}
	}
	if !ok {
		return damagedLog(dir, fmt.Sprintf("the tail segment %s holds an index block that does not match its committed entries (a seal that did not complete), and no entry can be appended to it", name))
	}
	now := time.Now()
	tail.SealTime = now
	tail.IndexStart = indexStart
	tail.MaxIndex = last
	ps.Segments[n-1] = tail
	ps.Segments = append(ps.Segments, types.SegmentInfo{
		ID:         ps.NextSegmentID,
		BaseIndex:  last + 1,
		MinIndex:   last + 1,
		SizeLimit:  uint32(segmentBytes),
		Codec:      wal.CodecBinaryV1,
		CreateTime: now,
	})
	ps.NextSegmentID++
	if err := meta.CommitState(ps); err != nil {
		return fmt.Errorf("raft log %s: record the seal of %s: %w", dir, name, err)
	}
	log.Warn("finished the rotation of a sealed tail segment a stop interrupted", "segment", name, "last", last)
	return nil
}

// indexMatches reports whether the index block at indexStart in a segment
// file whose first entry is base lists, for each entry from first (past a
// head truncation) to last, the offset its frame scan found (offset).
func indexMatches(path string, indexStart, base, first, last uint64, offset func(uint64) (uint32, error)) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, 4*(last-base+1))
	if _, err := f.ReadAt(buf, int64(indexStart)); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, err
	}
	for i := first; i <= last; i++ {
		want, err := offset(i)
		if err != nil {
			return false, nil
		}
		if binary.LittleEndian.Uint32(buf[4*(i-base):]) != want {
			return false, nil
		}
	}
	return true, nil
}

// checkSegments reads the first entry each segment file of the WAL in dir
// holds. raft-wal opens a sealed segment lazily, at its first read, and
// raft.NewRaft panics when that read fails; hyperfunc before raft-wal
// v0.4.1 left a segment sealed without its index block after a log-suffix
// truncation (hashicorp/raft-wal#31), and such a data dir fails here with
// what to do instead. Segment files are named <base index>-<segment ID>.wal
// (20 decimal digits, then 16 hex); one read per segment (64 MiB each).
func checkSegments(dir string, w *wal.WAL) error {
	first, err := w.FirstIndex()
	if err != nil {
		return fmt.Errorf("raft log %s: %w", dir, err)
	}
	last, err := w.LastIndex()
	if err != nil {
		return fmt.Errorf("raft log %s: %w", dir, err)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil || first == 0 {
		return err
	}
	for _, name := range names {
		base, perr := strconv.ParseUint(strings.SplitN(filepath.Base(name), "-", 2)[0], 10, 64)
		if perr != nil {
			continue // not a segment raft-wal named
		}
		idx := max(base, first)
		if idx > last {
			continue // the tail, empty yet, or a segment raft-wal deletes
		}
		var l raft.Log
		if err := w.GetLog(idx, &l); err != nil {
			return damagedLog(dir, fmt.Sprintf("entry %d in %s cannot be read: %v", idx, filepath.Base(name), err))
		}
	}
	return nil
}

// damagedLog is the error of a WAL in dir (<data dir>/raft/wal) that this
// server cannot use, what is wrong, and what to do.
func damagedLog(dir, what string) error {
	return fmt.Errorf("raft log %s: %s. This server's copy of the Raft log is damaged; the cluster's other servers hold the log. Move %s away and start this server again at the same address on an empty data dir: it joins as a new server in place of the old one and receives a snapshot", dir, what, filepath.Dir(filepath.Dir(dir)))
}
