package fsm

import (
	"crypto/sha256"
	"encoding/hex"
)

// Hash digests the whole state as a snapshot would write it. Two replicas
// that applied the same entries answer the same hash: memdb iterates in
// index order, bbolt in key order, and encoding/json sorts map keys.
func (s *Store) Hash() (string, error) {
	st := s.state.Load()
	disk, err := st.disk.Snapshot()
	if err != nil {
		return "", err
	}
	defer disk.Release()
	h := sha256.New()
	if err := writeSnapshot(h, st.mem.Txn(false), disk); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
