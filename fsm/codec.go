package fsm

import (
	"encoding/binary"
	"errors"
	"math"
	"sort"
	"time"

	"github.com/hyperfunc/hyperfunc/cachestore"
)

// A compact binary encoding of the records that make up nearly all of a
// large state (calls, log entries, outputs), used in snapshots: JSON took
// most of a million-call restore. Each record starts with its own version
// byte, so fields can be added without a new snapshot version.

const (
	recordV1 = 1
	recordV2 = 2 // calls: LogSeq added at the end
)

var errShortRecord = errors.New("record truncated")

type enc struct{ b []byte }

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bytes(p []byte) {
	if p == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(p)) + 1) // 0 is nil, so nil and empty survive the trip
	e.b = append(e.b, p...)
}
func (e *enc) boolean(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// timestamp keeps the instant and whether it was zero; times in the state
// are UTC, stamped by the leader.
func (e *enc) timestamp(t time.Time) {
	if t.IsZero() {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.varint(t.UnixNano())
}

// strmap writes keys sorted, so equal maps encode alike (state hashes).
func (e *enc) strmap(m map[string]string) {
	if m == nil {
		e.uvarint(0)
		return
	}
	e.uvarint(uint64(len(m)) + 1)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e.str(k)
		e.str(m[k])
	}
}

type dec struct {
	b      []byte
	err    error
	intern map[string]string
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errShortRecord
	}
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) take(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail()
		d.b = nil
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) str() string { return string(d.take(d.uvarint())) }

// istr decodes a string that repeats across records (function, owner,
// state) once per distinct value, so a million calls share their copies.
func (d *dec) istr() string {
	p := d.take(d.uvarint())
	if s, ok := d.intern[string(p)]; ok {
		return s
	}
	s := string(p)
	if d.intern != nil && len(d.intern) < 1<<16 {
		d.intern[s] = s
	}
	return s
}

func (d *dec) bytes() []byte {
	n := d.uvarint()
	if n == 0 {
		return nil
	}
	return append([]byte{}, d.take(n-1)...)
}

func (d *dec) boolean() bool {
	p := d.take(1)
	return len(p) == 1 && p[0] == 1
}

func (d *dec) timestamp() time.Time {
	p := d.take(1)
	if len(p) == 0 || p[0] == 0 {
		return time.Time{}
	}
	return time.Unix(0, d.varint()).UTC()
}

func (d *dec) strmap() map[string]string {
	n := d.uvarint()
	if n == 0 {
		return nil
	}
	n--
	if n > uint64(len(d.b)) { // every pair takes at least two bytes
		d.fail()
		return nil
	}
	m := make(map[string]string, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := d.str()
		m[k] = d.str()
	}
	return m
}

// version reads the record's version byte; max is the newest this build
// reads for the record kind.
func (d *dec) version(max byte) byte {
	p := d.take(1)
	if len(p) != 1 {
		return 0
	}
	if p[0] < recordV1 || p[0] > max {
		d.err = errors.New("unknown record version")
	}
	return p[0]
}

func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		return errors.New("trailing bytes in record")
	}
	return d.err
}

func encodeCall(c *Call, buf []byte) []byte {
	e := enc{b: append(buf, recordV2)}
	e.str(c.ID)
	e.str(c.Function)
	e.str(c.Owner)
	e.str(c.State)
	e.str(c.Reason)
	e.str(c.Message)
	e.varint(int64(c.ExitCode))
	e.bytes(c.Stdin)
	e.varint(c.StdinSize)
	e.varint(c.StdoutSize)
	e.strmap(c.Env)
	e.str(c.Key)
	e.str(c.Ref)
	e.boolean(c.CancelRequested)
	e.boolean(c.Rotated)
	e.uvarint(c.Seq)
	e.timestamp(c.CreatedAt)
	e.timestamp(c.StartedAt)
	e.timestamp(c.FinishedAt)
	e.uvarint(c.CreateIndex)
	e.uvarint(c.ModifyIndex)
	e.uvarint(c.LogSeq)
	return e.b
}

func decodeCall(b []byte, intern map[string]string) (*Call, error) {
	d := dec{b: b, intern: intern}
	v := d.version(recordV2)
	c := &Call{}
	c.ID = d.str()
	c.Function = d.istr()
	c.Owner = d.istr()
	c.State = d.istr()
	c.Reason = d.istr()
	c.Message = d.str()
	ec := d.varint()
	if ec < math.MinInt32 || ec > math.MaxInt32 {
		d.fail()
	}
	c.ExitCode = int(ec)
	c.Stdin = d.bytes()
	c.StdinSize = d.varint()
	c.StdoutSize = d.varint()
	c.Env = d.strmap()
	c.Key = d.str()
	c.Ref = d.str()
	c.CancelRequested = d.boolean()
	c.Rotated = d.boolean()
	c.Seq = d.uvarint()
	c.CreatedAt = d.timestamp()
	c.StartedAt = d.timestamp()
	c.FinishedAt = d.timestamp()
	c.CreateIndex = d.uvarint()
	c.ModifyIndex = d.uvarint()
	if v >= recordV2 {
		c.LogSeq = d.uvarint()
	}
	return c, d.done()
}

func encodeLog(l *cachestore.LogEntry, buf []byte) []byte {
	e := enc{b: append(buf, recordV1)}
	e.str(l.Function)
	e.uvarint(l.Seq)
	e.timestamp(l.Time)
	e.str(l.CallID)
	e.str(l.Kind)
	e.str(l.Text)
	return e.b
}

func decodeLog(b []byte, intern map[string]string) (*cachestore.LogEntry, error) {
	d := dec{b: b, intern: intern}
	d.version(recordV1)
	l := &cachestore.LogEntry{}
	l.Function = d.istr()
	l.Seq = d.uvarint()
	l.Time = d.timestamp()
	l.CallID = d.str()
	l.Kind = d.istr()
	l.Text = d.str()
	return l, d.done()
}

func encodeOutput(o *cachestore.Output, buf []byte) []byte {
	e := enc{b: append(buf, recordV1)}
	e.str(o.CallID)
	e.str(o.Function)
	e.uvarint(o.Seq)
	e.bytes(o.Data)
	return e.b
}

func decodeOutput(b []byte, intern map[string]string) (*cachestore.Output, error) {
	d := dec{b: b, intern: intern}
	d.version(recordV1)
	o := &cachestore.Output{}
	o.CallID = d.str()
	o.Function = d.istr()
	o.Seq = d.uvarint()
	o.Data = d.bytes()
	return o, d.done()
}

// encodeEnqueue writes a CallEnqueueBin entry: the type byte, the queue
// bound, then each call as a length-prefixed call record, then the byte
// bound (after the records: entries written before it existed end there,
// and decode as no bound).
func encodeEnqueue(t byte, req *CallEnqueueRequest) []byte {
	e := enc{b: []byte{t}}
	e.uvarint(uint64(req.MaxQueued))
	e.uvarint(uint64(len(req.Calls)))
	var rec []byte
	for _, c := range req.Calls {
		rec = encodeCall(c, rec[:0])
		e.uvarint(uint64(len(rec)))
		e.b = append(e.b, rec...)
	}
	e.uvarint(uint64(max(req.MaxQueuedBytes, 0)))
	return e.b
}

func decodeEnqueue(b []byte) (*CallEnqueueRequest, error) {
	d := dec{b: b, intern: map[string]string{}}
	req := &CallEnqueueRequest{}
	mq := d.uvarint()
	n := d.uvarint()
	if d.err != nil || mq > math.MaxInt32 || n > uint64(len(d.b)) {
		return nil, errShortRecord
	}
	req.MaxQueued = int(mq)
	req.Calls = make([]*Call, 0, n)
	for i := uint64(0); i < n; i++ {
		rec := d.take(d.uvarint())
		if d.err != nil {
			return nil, d.err
		}
		c, err := decodeCall(rec, d.intern)
		if err != nil {
			return nil, err
		}
		req.Calls = append(req.Calls, c)
	}
	if len(d.b) > 0 {
		mb := d.uvarint()
		if d.err != nil || mb > math.MaxInt64 {
			return nil, errShortRecord
		}
		req.MaxQueuedBytes = int64(mb)
	}
	return req, d.done()
}
