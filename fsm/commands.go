package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MessageType tags each Raft log entry: one prefix byte before a JSON body.
// The log is append-only: never renumber a type, never reuse a number.
type MessageType uint8

// IgnoreUnknownTypeFlag set on a type lets a follower that does not know the
// type skip the entry instead of stopping (for commands that add optional
// state, written by a newer leader during a rolling upgrade).
const IgnoreUnknownTypeFlag MessageType = 128

// The command types.
const (
	UserUpsertType     MessageType = 1
	UserDeleteType     MessageType = 2
	TokenUpsertType    MessageType = 3
	TokenDeleteType    MessageType = 4
	FunctionUpsertType MessageType = 5
	FunctionDeleteType MessageType = 6
	CallEnqueueType    MessageType = 7
	CallStartType      MessageType = 8
	CallRunningType    MessageType = 9
	CallFinishType     MessageType = 10
	CallCancelType     MessageType = 11
	MemberUpsertType   MessageType = 12
	MemberDeleteType   MessageType = 13
	CallRequeueType    MessageType = 14
	// CallEnqueueBinType is CallEnqueueType with a binary body (the call
	// records of snapshots): the hottest entry, JSON cost every replica CPU.
	CallEnqueueBinType MessageType = 15
	// PayloadStageType carries one chunk of a payload too large for one
	// entry (staged.go); PayloadDropType drops chunks nobody took.
	PayloadStageType MessageType = 16
	PayloadDropType  MessageType = 17
	// PayloadStageBinType is PayloadStageType with a binary body: JSON
	// carried the chunk in base64, a third larger, and every replica
	// decoded it (codec.go).
	PayloadStageBinType MessageType = 18
)

var typeNames = map[MessageType]string{
	UserUpsertType:      "UserUpsert",
	UserDeleteType:      "UserDelete",
	TokenUpsertType:     "TokenUpsert",
	TokenDeleteType:     "TokenDelete",
	FunctionUpsertType:  "FunctionUpsert",
	FunctionDeleteType:  "FunctionDelete",
	CallEnqueueType:     "CallEnqueue",
	CallStartType:       "CallStart",
	CallRunningType:     "CallRunning",
	CallFinishType:      "CallFinish",
	CallCancelType:      "CallCancel",
	MemberUpsertType:    "MemberUpsert",
	MemberDeleteType:    "MemberDelete",
	CallRequeueType:     "CallRequeue",
	CallEnqueueBinType:  "CallEnqueueBin",
	PayloadStageType:    "PayloadStage",
	PayloadDropType:     "PayloadDrop",
	PayloadStageBinType: "PayloadStageBin",
}

func (t MessageType) String() string {
	if n, ok := typeNames[t&^IgnoreUnknownTypeFlag]; ok {
		return n
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// UserUpsertRequest creates or replaces a user.
type UserUpsertRequest struct {
	User *User
	// Create fails the command when the user exists.
	Create bool
}

// UserDeleteRequest deletes a user and its tokens.
type UserDeleteRequest struct{ Name string }

// TokenUpsertRequest stores a token.
type TokenUpsertRequest struct{ Token *Token }

// TokenDeleteRequest revokes a token.
type TokenDeleteRequest struct{ AccessorID string }

// FunctionUpsertRequest creates (Create) or replaces a function.
type FunctionUpsertRequest struct {
	Function *Function
	Create   bool
	// MaxPerOwner bounds a new function's owner's functions (0: no bound):
	// each has caches of its own, so the count bounds a user's state.
	MaxPerOwner int `json:",omitempty"`
}

// FunctionDeleteRequest deletes a function, its queued calls, its caches.
type FunctionDeleteRequest struct {
	ID   string
	Time time.Time
}

// CallEnqueueRequest queues calls. Calls from many HTTP requests are
// batched into one entry; each call succeeds or fails on its own.
type CallEnqueueRequest struct {
	Calls []*Call
	// MaxQueued bounds the PENDING calls of one owner (0: no bound).
	MaxQueued int
	// MaxQueuedBytes bounds the stdin bytes one owner's unfinished calls
	// hold (OwnerUsage.StdinBytes; 0: no bound).
	MaxQueuedBytes int64
}

// CallStartRequest moves PENDING calls to STARTING: the leader decided to
// start them and is about to ask the executor.
type CallStartRequest struct {
	IDs  []string
	Time time.Time
}

// CallRunningRequest records that the executor started calls.
type CallRunningRequest struct {
	Running []CallRunning
}

// CallRunning is one started call and the executor's name for it.
type CallRunning struct {
	ID   string
	Ref  string
	Time time.Time
}

// CallFinishRequest records final states. A call already final is left as
// it is, so a result reported twice is applied once.
type CallFinishRequest struct {
	Results []*CallResult
}

// CallResult is the end of one call.
type CallResult struct {
	ID       string
	State    string // FINISHED, FAILED or CANCELED
	Reason   string
	Message  string
	ExitCode int
	Stdout   []byte
	Stderr   string
	Time     time.Time
	// Ref is the executor's name for the call, when it reported one; a call
	// that ends before its CallRunning was recorded keeps it this way.
	Ref string `json:",omitempty"`
	// StdoutSize set with no Stdout: the stdout was staged under
	// StagedStdout(ID) in chunks (PayloadStage) before this entry.
	StdoutSize int64 `json:",omitempty"`
}

// CallCancelRequest cancels a call: a PENDING one ends CANCELED at once; a
// started one is marked, and the dispatcher stops it.
type CallCancelRequest struct {
	ID   string
	Time time.Time
}

// CallRequeueRequest puts STARTING calls back to PENDING: the executor
// said they never started (after a leader change) or refused them for a
// passing reason (Nomad unavailable).
type CallRequeueRequest struct {
	IDs     []string
	Message string
	Time    time.Time
}

// PayloadStageRequest is one chunk of a payload staged under Key: a call's
// stdin under its ID (the enqueue then carries StdinSize and no Stdin), its
// stdout under StagedStdout(ID). Chunks come in order: Offset is the
// bytes staged under Key so far.
type PayloadStageRequest struct {
	Key    string
	Offset int64
	Data   []byte
	Time   time.Time
}

// PayloadDropRequest drops staged chunks older than Before: a leader that
// failed between the chunks and the entry that takes them leaves them.
type PayloadDropRequest struct{ Before time.Time }

// MemberUpsertRequest records a server's addresses.
type MemberUpsertRequest struct{ Member *Member }

// MemberDeleteRequest forgets a server.
type MemberDeleteRequest struct{ ID string }

// Encode builds a log entry: the type byte, then the JSON body.
func Encode(t MessageType, body any) ([]byte, error) {
	switch t &^ IgnoreUnknownTypeFlag {
	case CallEnqueueBinType:
		req, ok := body.(*CallEnqueueRequest)
		if !ok {
			return nil, fmt.Errorf("encode %s: body is %T", t, body)
		}
		return encodeEnqueue(byte(t), req), nil
	case PayloadStageBinType:
		req, ok := body.(*PayloadStageRequest)
		if !ok {
			return nil, fmt.Errorf("encode %s: body is %T", t, body)
		}
		return encodeStage(byte(t), req), nil
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	out := make([]byte, 0, len(b)+1)
	out = append(out, byte(t))
	return append(out, b...), nil
}

// ErrEmptyEntry is the decode error of a log entry without a type byte.
var ErrEmptyEntry = errors.New("empty log entry")

// Decode splits an entry into its type and body, and decodes the body into
// the request type that goes with it. Unknown types answer ErrUnknownType.
func Decode(buf []byte) (MessageType, any, error) {
	if len(buf) == 0 {
		return 0, nil, ErrEmptyEntry
	}
	t := MessageType(buf[0])
	mk, ok := requestTypes[t&^IgnoreUnknownTypeFlag]
	if !ok {
		return t, nil, fmt.Errorf("%w: %s", ErrUnknownType, t)
	}
	var bin any
	var err error
	switch t &^ IgnoreUnknownTypeFlag {
	case CallEnqueueBinType:
		bin, err = decodeEnqueue(buf[1:])
	case PayloadStageBinType:
		bin, err = decodeStage(buf[1:])
	}
	if err != nil {
		return t, nil, fmt.Errorf("decode %s: %w", t, err)
	}
	if bin != nil {
		return t, bin, nil
	}
	req := mk()
	if err := json.Unmarshal(buf[1:], req); err != nil {
		return t, nil, fmt.Errorf("decode %s: %w", t, err)
	}
	return t, req, nil
}

// ErrUnknownType is returned for a type this build does not know.
var ErrUnknownType = errors.New("unknown message type")

var requestTypes = map[MessageType]func() any{
	UserUpsertType:      func() any { return new(UserUpsertRequest) },
	UserDeleteType:      func() any { return new(UserDeleteRequest) },
	TokenUpsertType:     func() any { return new(TokenUpsertRequest) },
	TokenDeleteType:     func() any { return new(TokenDeleteRequest) },
	FunctionUpsertType:  func() any { return new(FunctionUpsertRequest) },
	FunctionDeleteType:  func() any { return new(FunctionDeleteRequest) },
	CallEnqueueType:     func() any { return new(CallEnqueueRequest) },
	CallStartType:       func() any { return new(CallStartRequest) },
	CallRunningType:     func() any { return new(CallRunningRequest) },
	CallFinishType:      func() any { return new(CallFinishRequest) },
	CallCancelType:      func() any { return new(CallCancelRequest) },
	MemberUpsertType:    func() any { return new(MemberUpsertRequest) },
	MemberDeleteType:    func() any { return new(MemberDeleteRequest) },
	CallRequeueType:     func() any { return new(CallRequeueRequest) },
	CallEnqueueBinType:  func() any { return new(CallEnqueueRequest) },
	PayloadStageType:    func() any { return new(PayloadStageRequest) },
	PayloadDropType:     func() any { return new(PayloadDropRequest) },
	PayloadStageBinType: func() any { return new(PayloadStageRequest) },
}
