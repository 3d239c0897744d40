package fsm

import (
	"fmt"
	"time"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// Payloads larger than MaxEntryPayload (a stdin or stdout above it, with
// -max-stdin or -max-stdout raised past the default) reach Raft in chunks,
// each its own PayloadStage entry, and the entry that needs the payload
// (the enqueue, the finish) takes them: so no entry is larger than about
// MaxEntryPayload whatever the limits. Chunks wait in memdb, for the few
// milliseconds between them and their taker; a leader that fails in
// between leaves them to the next leader's PayloadDrop.

// StagedStdout is the key a call's stdout is staged under.
func StagedStdout(callID string) string { return callID + "/stdout" }

// maxStaged bounds what one key may stage: the largest -max-stdin or
// -max-stdout a server takes.
const maxStaged = 1 << 30

// Staged is one chunk of a staged payload.
type Staged struct {
	Key    string
	Offset int64
	Data   []byte
	Time   time.Time
}

func (p *processor) applyPayloadStage(txn *cachestore.Txn, _ uint64, req *PayloadStageRequest) any {
	have, err := stagedBytes(txn, req.Key)
	if err != nil {
		return err
	}
	if req.Offset != have {
		return fmt.Errorf("chunk at %d of %q: %d bytes are staged: %w", req.Offset, req.Key, have, ErrConflict)
	}
	if have+int64(len(req.Data)) > maxStaged {
		return fmt.Errorf("payload %q passes %d bytes: %w", req.Key, maxStaged, ErrLimit)
	}
	if err := txn.Insert(TableStaged, &Staged{Key: req.Key, Offset: req.Offset, Data: req.Data, Time: req.Time}); err != nil {
		return fmt.Errorf("stage chunk: %w", err)
	}
	return nil
}

func (p *processor) applyPayloadDrop(txn *cachestore.Txn, _ uint64, req *PayloadDropRequest) any {
	it, err := txn.Get(TableStaged, IndexID)
	if err != nil {
		return fmt.Errorf("staged chunks: %w", err)
	}
	var old []*Staged
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if c := raw.(*Staged); c.Time.Before(req.Before) {
			old = append(old, c)
		}
	}
	for _, c := range old {
		if err := txn.Delete(TableStaged, c); err != nil {
			return fmt.Errorf("drop chunk: %w", err)
		}
	}
	return nil
}

func stagedChunks(txn *cachestore.Txn, key string) ([]*Staged, error) {
	it, err := txn.Get(TableStaged, IndexID+"_prefix", cachestore.Exact(key))
	if err != nil {
		return nil, fmt.Errorf("staged chunks of %q: %w", key, err)
	}
	var out []*Staged
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Staged))
	}
	return out, nil
}

func stagedBytes(txn *cachestore.Txn, key string) (int64, error) {
	cs, err := stagedChunks(txn, key)
	var n int64
	for _, c := range cs {
		n += int64(len(c.Data))
	}
	return n, err
}

// takeStaged removes the chunks staged under key and answers them joined;
// ok is false when they do not add up to size (none staged, or dropped).
func takeStaged(txn *cachestore.Txn, key string, size int64) (data []byte, ok bool, err error) {
	cs, err := stagedChunks(txn, key)
	if err != nil {
		return nil, false, err
	}
	data = make([]byte, 0, size)
	for _, c := range cs {
		if c.Offset == int64(len(data)) { // chunks are contiguous by construction
			data = append(data, c.Data...)
		}
		if err := txn.Delete(TableStaged, c); err != nil {
			return nil, false, fmt.Errorf("take chunk: %w", err)
		}
	}
	return data, int64(len(data)) == size, nil
}
