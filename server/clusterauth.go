package server

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// MinClusterKeyBytes is the shortest -cluster-key accepted: 128 bits.
const MinClusterKeyBytes = 16

// clusterAuth is what the cluster key proves, derived from it so that one
// secret does three jobs and leaking one derived value gives away neither
// the others nor the key:
//   - the Raft transport's TLS identity: every server derives the same
//     ed25519 key pair and accepts a peer only if it proves (TLS 1.3
//     CertificateVerify) that it holds that very key. Mutual TLS without a
//     CA to run; an -acl cluster's Raft port no longer applies entries from
//     anyone who can reach it.
//   - the token of the internal HTTP routes (join, member, leave, enqueue);
//   - the cluster ID that labels this cluster's containers and jobs.
type clusterAuth struct {
	cert      tls.Certificate
	pub       ed25519.PublicKey
	httpToken string
	clusterID string
}

func derive(key, purpose string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// ClusterID is the ID of the cluster whose servers share key: 16 hex
// digits, the same on every server, different for another key.
func ClusterID(key string) string {
	return hex.EncodeToString(derive(key, "hyperfunc cluster id v1"))[:16]
}

func newClusterAuth(key string) (*clusterAuth, error) {
	if len(key) < MinClusterKeyBytes {
		return nil, fmt.Errorf("the cluster key is %d bytes, at least %d are needed", len(key), MinClusterKeyBytes)
	}
	priv := ed25519.NewKeyFromSeed(derive(key, "hyperfunc raft tls v1"))
	pub := priv.Public().(ed25519.PublicKey)
	// The certificate only carries the key: peers check the key, not the
	// certificate's names or dates (there is no CA to check them against).
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS certificate: %w", err)
	}
	return &clusterAuth{
		cert:      tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv},
		pub:       pub,
		httpToken: hex.EncodeToString(derive(key, "hyperfunc internal http v1")),
		clusterID: ClusterID(key),
	}, nil
}

// tlsConfig serves and dials: TLS 1.3 only, a certificate required both
// ways, and the peer's key must be the cluster's.
func (a *clusterAuth) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Every connection proves the key anew: no resumption.
		SessionTicketsDisabled: true,
		Certificates:           []tls.Certificate{a.cert},
		ClientAuth:             tls.RequireAnyClientCert,
		// Names and chains mean nothing here; VerifyPeerCertificate checks
		// the one thing that does.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("cluster TLS: the peer sent no certificate")
			}
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return fmt.Errorf("cluster TLS: %w", err)
			}
			k, ok := c.PublicKey.(ed25519.PublicKey)
			if !ok || subtle.ConstantTimeCompare(k, a.pub) != 1 {
				return errors.New("cluster TLS: the peer does not hold this cluster's key")
			}
			return nil
		},
	}
}

// checkHTTPToken compares a request's internal token in constant time.
func (a *clusterAuth) checkHTTPToken(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(a.httpToken)) == 1
}

// handshakeTimeout bounds an incoming Raft connection's TLS handshake, so
// a peer that connects and says nothing does not hold a slot.
const handshakeTimeout = 10 * time.Second

// maxPendingHandshakes bounds the Raft connections that have not proved the
// key yet: past it new ones are closed at once. Peers of a cluster open a
// handful; an unauthenticated flood must not take the agent's file
// descriptors and memory (measured before the bound: 9,000 idle connects,
// 2.5 GB of heap and "too many open files" on the HTTP listener).
const maxPendingHandshakes = 64

// tlsStream is a raft.StreamLayer whose every connection, both ways, is
// the cluster's mutual TLS. Incoming connections are handshaken by its own
// accept loop, concurrently and bounded; Raft's transport sees only peers
// that proved the key, so a stranger's connection neither reaches Raft's
// decoder nor its log.
type tlsStream struct {
	ln        net.Listener
	advertise net.Addr
	cfg       *tls.Config
	conns     chan net.Conn // handshaken, waiting for Accept
	slots     chan struct{} // handshakes in progress
	done      chan struct{}
	closeOnce sync.Once
}

func newTLSStream(bind string, advertise net.Addr, cfg *tls.Config) (*tlsStream, error) {
	l, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if advertise == nil {
		advertise = l.Addr()
	}
	if a, ok := advertise.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		l.Close()
		return nil, fmt.Errorf("raft address %s is not advertisable: set -advertise-raft", advertise)
	}
	s := &tlsStream{
		ln: l, advertise: advertise, cfg: cfg,
		conns: make(chan net.Conn), slots: make(chan struct{}, maxPendingHandshakes), done: make(chan struct{}),
	}
	go s.acceptLoop()
	return s, nil
}

func (s *tlsStream) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			// Out of file descriptors or the like: wait a little, go on.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		select {
		case s.slots <- struct{}{}:
			go s.handshake(c)
		default:
			c.Close() // too many strangers at once
		}
	}
}

func (s *tlsStream) handshake(c net.Conn) {
	defer func() { <-s.slots }()
	tc := tls.Server(c, s.cfg)
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	select {
	case s.conns <- tc:
	case <-s.done:
		tc.Close()
	}
}

// Accept answers the next peer that proved the key.
func (s *tlsStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *tlsStream) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return s.ln.Close()
}

func (s *tlsStream) Addr() net.Addr { return s.advertise }

func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return tls.DialWithDialer(d, "tcp", string(addr), s.cfg)
}
