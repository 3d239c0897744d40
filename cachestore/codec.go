package cachestore

import "github.com/hyperfunc/hyperfunc/internal/record"

// The disk half stores outputs and log entries as the binary records a
// snapshot carries, so a snapshot streams them without decoding.

// EncodeLog appends a log entry's record to buf.
func EncodeLog(l *LogEntry, buf []byte) []byte {
	e := record.Enc{B: append(buf, record.V1)}
	e.Str(l.Function)
	e.Uvarint(l.Seq)
	e.Timestamp(l.Time)
	e.Str(l.CallID)
	e.Str(l.Kind)
	e.Str(l.Text)
	return e.B
}

// DecodeLog reads a log entry's record; intern (may be nil) shares the
// copies of repeated strings.
func DecodeLog(b []byte, intern map[string]string) (*LogEntry, error) {
	d := record.Dec{B: b, Intern: intern}
	d.Version(record.V1)
	l := &LogEntry{}
	l.Function = d.Istr()
	l.Seq = d.Uvarint()
	l.Time = d.Timestamp()
	l.CallID = d.Str()
	l.Kind = d.Istr()
	l.Text = d.Str()
	return l, d.Done()
}

// EncodeOutput appends an output's record to buf.
func EncodeOutput(o *Output, buf []byte) []byte {
	e := record.Enc{B: append(buf, record.V1)}
	e.Str(o.CallID)
	e.Str(o.Function)
	e.Uvarint(o.Seq)
	e.Bytes(o.Data)
	return e.B
}

// DecodeOutput reads an output's record.
func DecodeOutput(b []byte, intern map[string]string) (*Output, error) {
	d := record.Dec{B: b, Intern: intern}
	d.Version(record.V1)
	o := &Output{}
	o.CallID = d.Str()
	o.Function = d.Istr()
	o.Seq = d.Uvarint()
	o.Data = d.Bytes()
	return o, d.Done()
}

// outputHead reads an output record's call ID and data size without
// copying its data.
func outputHead(b []byte) (string, int64, error) {
	d := record.Dec{B: b}
	d.Version(record.V1)
	id := d.Str()
	d.Str()
	d.Uvarint()
	n := d.Uvarint()
	if n > 0 {
		n--
	}
	return id, int64(n), d.Err
}
