package fsm

import (
	"crypto/sha256"
	"encoding/hex"
)

// Hash digests the whole state as a snapshot would write it. Two replicas
// that applied the same entries answer the same hash: memdb iterates in
// index order and encoding/json sorts map keys.
func (s *Store) Hash() (string, error) {
	h := sha256.New()
	if err := writeSnapshot(h, s.ReadTxn()); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
