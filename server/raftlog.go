package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/migrate"
)

// The Raft log and stable store is hashicorp/raft-wal in <data-dir>/raft/wal:
// append-only segment files of 64 MiB read with pread, and a small bbolt
// file for the segment list and Raft's term and vote.
//
// It replaced raft-boltdb (raft.db), for memory: bbolt maps its whole file
// and reads a leaf with its values on every insert after it and on every
// delete, so with 1 MiB outputs staged through the log (issue 12) the log's
// pages ended up resident in the process, 365-540 MiB of VmRSS per server
// beside a ~50 MiB heap, and raft-boltdb does not expose its database for
// the state file's trim. raft-wal's segments are never mapped; the page
// cache may hold them, the process does not. It also syncs once per append
// where bbolt syncs twice, and compaction deletes whole segment files
// instead of growing bbolt's freelist.
const (
	walDir        = "wal"
	walMigrateDir = "wal.migrating"
	boltLogFile   = "raft.db"
)

// openLogStore opens the WAL under dir (<data-dir>/raft), first moving a
// raft.db left by an older version into it. The move is crash-safe: the
// copy is made in wal.migrating, renamed to wal once complete, and raft.db
// is removed last, so a start that finds raft.db beside a wal holding the
// same log only finishes the removal (one holding another log is refused:
// an older version ran here after the move), and one that finds
// wal.migrating starts the copy over. The caller holds the data dir's
// lock (datadir.go). Errors name the file that could not be read or written.
//
// Close the store with the returned func. (raft-wal v0.4.0's WAL.Close left
// its meta file open and locked, and a server restarted in the same process
// waited for ever on that lock; v0.4.2's closes it.)
func openLogStore(dir string, segmentBytes int, log hclog.Logger) (*wal.WAL, func() error, error) {
	final := filepath.Join(dir, walDir)
	bolt := filepath.Join(dir, boltLogFile)
	_, walErr := os.Stat(final)
	_, boltErr := os.Stat(bolt)
	switch {
	case walErr == nil && boltErr == nil:
		// Either the move stopped before its last step, or an older
		// version (which does not know the WAL) ran here since and wrote
		// a raft.db of its own: only the first may be removed.
		same, err := sameLog(bolt, final, log)
		if err != nil {
			return nil, nil, err
		}
		if !same {
			return nil, nil, fmt.Errorf("%s and %s both hold a Raft log and they differ: a hyperfunc older than the move to raft-wal ran on this data dir after it (downgrading is not supported). Keep the newer: remove %s to move raft.db in again, or remove raft.db to keep the WAL", bolt, final, final)
		}
		if err := removeSynced(bolt); err != nil {
			return nil, nil, fmt.Errorf("remove migrated %s: %w", bolt, err)
		}
	case errors.Is(walErr, os.ErrNotExist) && boltErr == nil:
		if err := migrateBolt(dir, log); err != nil {
			return nil, nil, err
		}
	case walErr != nil && !errors.Is(walErr, os.ErrNotExist):
		return nil, nil, fmt.Errorf("raft log %s: %w", final, walErr)
	}
	if err := os.MkdirAll(final, 0o700); err != nil {
		return nil, nil, fmt.Errorf("raft log %s: %w", final, err)
	}
	return openWAL(final, segmentBytes, log)
}

// openWAL opens the WAL in dir and checks that each segment can be read.
// segmentBytes 0 keeps raft-wal's default.
func openWAL(dir string, segmentBytes int, log hclog.Logger) (*wal.WAL, func() error, error) {
	meta := &metadb.BoltMetaDB{}
	if segmentBytes <= 0 {
		segmentBytes = wal.DefaultSegmentSize
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := finishRotation(dir, meta, segmentBytes, log); err != nil {
		meta.Close()
		return nil, nil, err
	}
	w, err := wal.Open(dir, wal.WithLogger(log), wal.WithMetaStore(meta), wal.WithSegmentSize(segmentBytes))
	if err != nil {
		meta.Close()
		return nil, nil, fmt.Errorf("raft log %s: %w", dir, err)
	}
	closeW := w.Close // and its meta store
	if err := checkSegments(dir, w); err != nil {
		closeW()
		return nil, nil, err
	}
	return w, closeW, nil
}

// migrateBolt copies raft.db's log entries and Raft's term and vote into a
// new WAL (the log by raft-wal's own migrate package), then renames it into place and
// removes raft.db.
func migrateBolt(dir string, log hclog.Logger) error {
	bolt := filepath.Join(dir, boltLogFile)
	tmp := filepath.Join(dir, walMigrateDir)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("clear %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("raft log %s: %w", tmp, err)
	}
	src, err := raftboltdb.New(raftboltdb.Options{Path: bolt})
	if err != nil {
		return fmt.Errorf("open %s to migrate it: %w", bolt, err)
	}
	defer src.Close()
	dst, closeDst, err := openWAL(tmp, 0, log)
	if err != nil {
		return err
	}
	first, _ := src.FirstIndex()
	last, _ := src.LastIndex()
	log.Info("moving the Raft log from raft.db to raft-wal", "first", first, "last", last)
	ctx := context.Background()
	// An empty raft.db (first == 0) has only the term and vote to copy.
	if last > 0 {
		if err := migrate.CopyLogs(ctx, dst, src, 8<<20, nil); err != nil {
			closeDst()
			return fmt.Errorf("copy %s's log: %w", bolt, err)
		}
	}
	if err := copyTermAndVote(dst, src); err != nil {
		closeDst()
		return fmt.Errorf("copy %s's term and vote: %w", bolt, err)
	}
	if err := closeDst(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, walDir)); err != nil {
		return fmt.Errorf("raft log: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	src.Close()
	if err := removeSynced(bolt); err != nil {
		return fmt.Errorf("remove migrated %s: %w", bolt, err)
	}
	return nil
}

// sameLog reports whether the raft.db at bolt holds the log the WAL in
// walPath holds, as a move leaves them: the same first and last index and
// the same last entry.
func sameLog(bolt, walPath string, log hclog.Logger) (bool, error) {
	src, err := raftboltdb.New(raftboltdb.Options{Path: bolt})
	if err != nil {
		return false, fmt.Errorf("open %s: %w", bolt, err)
	}
	defer src.Close()
	w, closeW, err := openWAL(walPath, 0, log)
	if err != nil {
		return false, err
	}
	defer closeW()
	bf, _ := src.FirstIndex()
	bl, _ := src.LastIndex()
	wf, _ := w.FirstIndex()
	wl, _ := w.LastIndex()
	if bf != wf || bl != wl {
		return false, nil
	}
	if bl == 0 {
		return true, nil
	}
	var a, b raft.Log
	if src.GetLog(bl, &a) != nil || w.GetLog(wl, &b) != nil {
		return false, nil
	}
	return a.Term == b.Term && a.Type == b.Type && bytes.Equal(a.Data, b.Data), nil
}

// removeSynced removes a file and syncs its directory, so the removal is
// on disk before what depends on it.
func removeSynced(p string) error {
	if err := os.Remove(p); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// copyTermAndVote copies the keys hashicorp/raft keeps in its StableStore.
// migrate.CopyStable would do it but fails on a key that is not there, and
// a server that never voted has no LastVoteTerm nor LastVoteCand.
func copyTermAndVote(dst, src raft.StableStore) error {
	for _, k := range []string{"CurrentTerm", "LastVoteTerm"} {
		v, err := src.GetUint64([]byte(k))
		if errors.Is(err, raftboltdb.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		if err := dst.SetUint64([]byte(k), v); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	v, err := src.Get([]byte("LastVoteCand"))
	if errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("LastVoteCand: %w", err)
	}
	return dst.Set([]byte("LastVoteCand"), v)
}

// logStoreBytes is the size of the Raft log on disk: the WAL's segment
// files and its meta file, in bytes (hyperfunc_raft_log_bytes).
func logStoreBytes(dir string) int64 {
	ents, err := os.ReadDir(filepath.Join(dir, walDir))
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

var _ raft.LogStore = (*wal.WAL)(nil)
