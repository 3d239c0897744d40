// Package record is the compact binary encoding of hyperfunc's bulk records
// (calls, log entries, outputs): the body of a snapshot's binary records,
// of the on-disk caches' values and of the hottest Raft entry. Each record
// starts with its own version byte, so fields can be added without a new
// snapshot version; a Dec keeps the first error, so decoders read every
// field and check once (Done).
package record

import (
	"encoding/binary"
	"errors"
	"sort"
	"time"
)

// Record versions.
const (
	V1 = 1
	V2 = 2 // calls: LogSeq added at the end
)

// ErrShort is a record that ends early.
var ErrShort = errors.New("record truncated")

// Enc appends a record to B.
type Enc struct{ B []byte }

func (e *Enc) Uvarint(v uint64) { e.B = binary.AppendUvarint(e.B, v) }
func (e *Enc) Varint(v int64)   { e.B = binary.AppendVarint(e.B, v) }
func (e *Enc) Str(s string)     { e.Uvarint(uint64(len(s))); e.B = append(e.B, s...) }
func (e *Enc) Bytes(p []byte) {
	if p == nil {
		e.Uvarint(0)
		return
	}
	e.Uvarint(uint64(len(p)) + 1) // 0 is nil, so nil and empty survive the trip
	e.B = append(e.B, p...)
}
func (e *Enc) Boolean(v bool) {
	if v {
		e.B = append(e.B, 1)
	} else {
		e.B = append(e.B, 0)
	}
}

// timestamp keeps the instant and whether it was zero; times in the state
// are UTC, stamped by the leader.
func (e *Enc) Timestamp(t time.Time) {
	if t.IsZero() {
		e.B = append(e.B, 0)
		return
	}
	e.B = append(e.B, 1)
	e.Varint(t.UnixNano())
}

// strmap writes keys sorted, so equal maps encode alike (state hashes).
func (e *Enc) Strmap(m map[string]string) {
	if m == nil {
		e.Uvarint(0)
		return
	}
	e.Uvarint(uint64(len(m)) + 1)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e.Str(k)
		e.Str(m[k])
	}
}

// Dec reads a record from B; the first error sticks (Err).
type Dec struct {
	B      []byte
	Err    error
	Intern map[string]string
}

func (d *Dec) Fail() {
	if d.Err == nil {
		d.Err = ErrShort
	}
}

func (d *Dec) Uvarint() uint64 {
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.Fail()
		d.B = nil
		return 0
	}
	d.B = d.B[n:]
	return v
}

func (d *Dec) Varint() int64 {
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.Fail()
		d.B = nil
		return 0
	}
	d.B = d.B[n:]
	return v
}

func (d *Dec) Take(n uint64) []byte {
	if n > uint64(len(d.B)) {
		d.Fail()
		d.B = nil
		return nil
	}
	p := d.B[:n]
	d.B = d.B[n:]
	return p
}

func (d *Dec) Str() string { return string(d.Take(d.Uvarint())) }

// istr decodes a string that repeats across records (function, owner,
// state) once per distinct value, so a million calls share their copies.
func (d *Dec) Istr() string {
	p := d.Take(d.Uvarint())
	if s, ok := d.Intern[string(p)]; ok {
		return s
	}
	s := string(p)
	if d.Intern != nil && len(d.Intern) < 1<<16 {
		d.Intern[s] = s
	}
	return s
}

func (d *Dec) Bytes() []byte {
	n := d.Uvarint()
	if n == 0 {
		return nil
	}
	return append([]byte{}, d.Take(n-1)...)
}

func (d *Dec) Boolean() bool {
	p := d.Take(1)
	return len(p) == 1 && p[0] == 1
}

func (d *Dec) Timestamp() time.Time {
	p := d.Take(1)
	if len(p) == 0 || p[0] == 0 {
		return time.Time{}
	}
	return time.Unix(0, d.Varint()).UTC()
}

func (d *Dec) Strmap() map[string]string {
	n := d.Uvarint()
	if n == 0 {
		return nil
	}
	n--
	if n > uint64(len(d.B)) { // every pair takes at least two bytes
		d.Fail()
		return nil
	}
	m := make(map[string]string, n)
	for i := uint64(0); i < n && d.Err == nil; i++ {
		k := d.Str()
		m[k] = d.Str()
	}
	return m
}

// version reads the record's version byte; max is the newest this build
// reads for the record kind.
func (d *Dec) Version(max byte) byte {
	p := d.Take(1)
	if len(p) != 1 {
		return 0
	}
	if p[0] < V1 || p[0] > max {
		d.Err = errors.New("unknown record version")
	}
	return p[0]
}

func (d *Dec) Done() error {
	if d.Err == nil && len(d.B) != 0 {
		return errors.New("trailing bytes in record")
	}
	return d.Err
}
