package fsm

import (
	"math"

	"github.com/hyperfunc/hyperfunc/internal/record"
)

// Calls in the compact binary encoding of package record: in snapshots
// (JSON took most of a million-call restore), as the disk half's records
// of ended calls, and in the CallEnqueueBin entry.

func encodeCall(c *Call, buf []byte) []byte {
	e := record.Enc{B: append(buf, record.V2)}
	e.Str(c.ID)
	e.Str(c.Function)
	e.Str(c.Owner)
	e.Str(c.State)
	e.Str(c.Reason)
	e.Str(c.Message)
	e.Varint(int64(c.ExitCode))
	e.Bytes(c.Stdin)
	e.Varint(c.StdinSize)
	e.Varint(c.StdoutSize)
	e.Strmap(c.Env)
	e.Str(c.Key)
	e.Str(c.Ref)
	e.Boolean(c.CancelRequested)
	e.Boolean(c.Rotated)
	e.Uvarint(c.Seq)
	e.Timestamp(c.CreatedAt)
	e.Timestamp(c.StartedAt)
	e.Timestamp(c.FinishedAt)
	e.Uvarint(c.CreateIndex)
	e.Uvarint(c.ModifyIndex)
	e.Uvarint(c.LogSeq)
	return e.B
}

func decodeCall(b []byte, intern map[string]string) (*Call, error) {
	d := record.Dec{B: b, Intern: intern}
	v := d.Version(record.V2)
	c := &Call{}
	c.ID = d.Str()
	c.Function = d.Istr()
	c.Owner = d.Istr()
	c.State = d.Istr()
	c.Reason = d.Istr()
	c.Message = d.Str()
	ec := d.Varint()
	if ec < math.MinInt32 || ec > math.MaxInt32 {
		d.Fail()
	}
	c.ExitCode = int(ec)
	c.Stdin = d.Bytes()
	c.StdinSize = d.Varint()
	c.StdoutSize = d.Varint()
	c.Env = d.Strmap()
	c.Key = d.Str()
	c.Ref = d.Str()
	c.CancelRequested = d.Boolean()
	c.Rotated = d.Boolean()
	c.Seq = d.Uvarint()
	c.CreatedAt = d.Timestamp()
	c.StartedAt = d.Timestamp()
	c.FinishedAt = d.Timestamp()
	c.CreateIndex = d.Uvarint()
	c.ModifyIndex = d.Uvarint()
	if v >= record.V2 {
		c.LogSeq = d.Uvarint()
	}
	return c, d.Done()
}

// encodeStage writes a PayloadStageBin entry: the type byte, the key, the
// offset, the leader's time, then the chunk's bytes to the end, raw.
func encodeStage(t byte, req *PayloadStageRequest) []byte {
	e := record.Enc{B: make([]byte, 0, 1+len(req.Key)+32+len(req.Data))}
	e.B = append(e.B, t)
	e.Str(req.Key)
	e.Varint(req.Offset)
	e.Timestamp(req.Time)
	e.B = append(e.B, req.Data...)
	return e.B
}

func decodeStage(b []byte) (*PayloadStageRequest, error) {
	d := record.Dec{B: b}
	req := &PayloadStageRequest{Key: d.Str(), Offset: d.Varint(), Time: d.Timestamp()}
	if d.Err != nil {
		return nil, d.Err
	}
	req.Data = append([]byte(nil), d.B...) // kept in the state: not the entry's buffer
	return req, nil
}

// encodeEnqueue writes a CallEnqueueBin entry: the type byte, the queue
// bound, then each call as a length-prefixed call record, then the byte
// bound (after the records: entries written before it existed end there,
// and decode as no bound).
func encodeEnqueue(t byte, req *CallEnqueueRequest) []byte {
	e := record.Enc{B: []byte{t}}
	e.Uvarint(uint64(req.MaxQueued))
	e.Uvarint(uint64(len(req.Calls)))
	var rec []byte
	for _, c := range req.Calls {
		rec = encodeCall(c, rec[:0])
		e.Uvarint(uint64(len(rec)))
		e.B = append(e.B, rec...)
	}
	e.Uvarint(uint64(max(req.MaxQueuedBytes, 0)))
	return e.B
}

func decodeEnqueue(b []byte) (*CallEnqueueRequest, error) {
	d := record.Dec{B: b, Intern: map[string]string{}}
	req := &CallEnqueueRequest{}
	mq := d.Uvarint()
	n := d.Uvarint()
	if d.Err != nil || mq > math.MaxInt32 || n > uint64(len(d.B)) {
		return nil, record.ErrShort
	}
	req.MaxQueued = int(mq)
	req.Calls = make([]*Call, 0, n)
	for i := uint64(0); i < n; i++ {
		rec := d.Take(d.Uvarint())
		if d.Err != nil {
			return nil, d.Err
		}
		c, err := decodeCall(rec, d.Intern)
		if err != nil {
			return nil, err
		}
		req.Calls = append(req.Calls, c)
	}
	if len(d.B) > 0 {
		mb := d.Uvarint()
		if d.Err != nil || mb > math.MaxInt64 {
			return nil, record.ErrShort
		}
		req.MaxQueuedBytes = int64(mb)
	}
	return req, d.Done()
}
