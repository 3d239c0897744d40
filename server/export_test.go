package server

import "crypto/tls"

// ClusterTLS is the Raft transport's TLS config for key, for tests that
// play a peer.
func ClusterTLS(key string) (*tls.Config, error) {
	a, err := newClusterAuth(key)
	if err != nil {
		return nil, err
	}
	return a.tlsConfig(), nil
}

// InternalToken is the internal routes' token for key.
func InternalToken(key string) string {
	a, err := newClusterAuth(key)
	if err != nil {
		panic(err)
	}
	return a.httpToken
}

// HashSecret is how tokens are stored.
func HashSecret(s string) string { return hashSecret(s) }

// LargestEntry is the largest Raft entry the server applied, in bytes.
func (s *Server) LargestEntry() int64 { return s.sized.largest.Load() }
