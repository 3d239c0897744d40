package fsm

import (
	"fmt"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// handler applies one decoded command inside a write transaction at a Raft
// index and returns Apply's result (an error for a business failure).
type handler func(txn *cachestore.Txn, index uint64, req any) any

// processor decodes entries and dispatches them through a table built
// explicitly here, one line per command type.
type processor struct {
	store    *Store
	handlers map[MessageType]handler
}

func newProcessor(s *Store) *processor {
	p := &processor{store: s}
	p.handlers = map[MessageType]handler{
		UserUpsertType:      typed(p.applyUserUpsert),
		UserDeleteType:      typed(p.applyUserDelete),
		TokenUpsertType:     typed(p.applyTokenUpsert),
		TokenDeleteType:     typed(p.applyTokenDelete),
		FunctionUpsertType:  typed(p.applyFunctionUpsert),
		FunctionDeleteType:  typed(p.applyFunctionDelete),
		CallEnqueueType:     typed(p.applyCallEnqueue),
		CallStartType:       typed(p.applyCallStart),
		CallRunningType:     typed(p.applyCallRunning),
		CallFinishType:      typed(p.applyCallFinish),
		CallCancelType:      typed(p.applyCallCancel),
		CallRequeueType:     typed(p.applyCallRequeue),
		CallEnqueueBinType:  typed(p.applyCallEnqueue),
		MemberUpsertType:    typed(p.applyMemberUpsert),
		MemberDeleteType:    typed(p.applyMemberDelete),
		PayloadStageType:    typed(p.applyPayloadStage),
		PayloadStageBinType: typed(p.applyPayloadStage),
		PayloadDropType:     typed(p.applyPayloadDrop),
	}
	return p
}

func typed[T any](fn func(*cachestore.Txn, uint64, *T) any) handler {
	return func(txn *cachestore.Txn, index uint64, req any) any { return fn(txn, index, req.(*T)) }
}

// apply runs one entry. A body that does not decode means a corrupt log, and
// a follower that cannot apply what the leader applied must stop rather
// than diverge: that is a panic. Business errors are returned.
func (p *processor) apply(index uint64, buf []byte) any {
	t, req, err := Decode(buf)
	if err != nil {
		if t&IgnoreUnknownTypeFlag != 0 && len(buf) > 0 {
			return nil
		}
		panic(fmt.Errorf("raft log entry %d: %w", index, err))
	}
	h := p.handlers[t&^IgnoreUnknownTypeFlag]
	txn := p.store.writeTxn()
	defer txn.Abort()
	res := h(txn, index, req)
	if _, failed := res.(error); failed {
		return res
	}
	// A disk half that cannot take a committed entry would leave this
	// server's state behind the others' for good: stop, as for an entry
	// that does not decode. A restart rebuilds both halves from Raft.
	if err := p.store.commit(txn); err != nil {
		panic(fmt.Errorf("raft log entry %d: %w", index, err))
	}
	return res
}
