package chaos

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// network is the set of loopback proxies in front of the servers' Raft and
// HTTP addresses. Every agent advertises its proxies, so all server-to-server
// traffic crosses them. A proxy attributes each accepted connection to the
// process that dialed it (through /proc), so cutting node n drops both the
// connections into n and the ones n opened to its peers: a real, symmetric
// partition on one loopback address, as iptables would make between hosts.
type network struct {
	mu    sync.Mutex
	cut   map[int]bool
	pids  map[int]int // process ID -> node index
	conns map[*pconn]struct{}

	unattributed atomic.Int64 // connections whose dialer was not found
	refused      atomic.Int64 // connections refused by a cut
}

type pconn struct {
	src, dst int // node indexes; src -1 when not a node
	target   string
	a, b     net.Conn
	last     atomic.Int64 // unix nanoseconds of the last bytes through it
}

func newNetwork() *network {
	return &network{cut: map[int]bool{}, pids: map[int]int{}, conns: map[*pconn]struct{}{}}
}

// setPID records that node runs as pid (and forgets its previous process).
func (n *network) setPID(node, pid int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for p, i := range n.pids {
		if i == node {
			delete(n.pids, p)
		}
	}
	if pid > 0 {
		n.pids[pid] = node
	}
}

func (n *network) pidMap() map[int]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := make(map[int]int, len(n.pids))
	for p, i := range n.pids {
		m[p] = i
	}
	return m
}

// Cut isolates node: its proxies refuse and drop everything, and the
// other proxies refuse and drop whatever it dialed.
func (n *network) Cut(node int) {
	n.mu.Lock()
	n.cut[node] = true
	var drop []*pconn
	for c := range n.conns {
		if c.src == node || c.dst == node {
			drop = append(drop, c)
		}
	}
	n.mu.Unlock()
	for _, c := range drop {
		c.a.Close()
		c.b.Close()
	}
}

// Heal ends node's isolation.
func (n *network) Heal(node int) {
	n.mu.Lock()
	delete(n.cut, node)
	n.mu.Unlock()
}

// HealAll ends every isolation.
func (n *network) HealAll() {
	n.mu.Lock()
	n.cut = map[int]bool{}
	n.mu.Unlock()
}

func (n *network) blocked(src, dst int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cut[dst] || (src >= 0 && n.cut[src])
}

// proxy forwards one listen address to a target for node dst.
type proxy struct {
	net    *network
	dst    int
	ln     net.Listener
	target func() string // where to forward a new connection ("" refuses it)
	wg     sync.WaitGroup
}

// newProxy starts a proxy in front of node dst (-1: not a node, never cut).
func (n *network) newProxy(dst int, target func() string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{net: n, dst: dst, ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's listen address, the one the node advertises.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) Close() {
	p.ln.Close()
	p.wg.Wait()
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *proxy) handle(c net.Conn) {
	src := -1
	if p.dst >= 0 {
		src = p.net.owner(c.RemoteAddr(), p.ln.Addr())
	}
	if p.dst >= 0 && p.net.blocked(src, p.dst) {
		p.net.refused.Add(1)
		c.Close()
		return
	}
	target := p.target()
	if target == "" {
		c.Close()
		return
	}
	b, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	pc := &pconn{src: src, dst: p.dst, target: target, a: c, b: b}
	p.net.mu.Lock()
	// A cut may have landed while dialing.
	if p.dst >= 0 && (p.net.cut[p.dst] || (src >= 0 && p.net.cut[src])) {
		p.net.mu.Unlock()
		c.Close()
		b.Close()
		return
	}
	p.net.conns[pc] = struct{}{}
	p.net.mu.Unlock()
	pc.last.Store(time.Now().UnixNano())
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			k, err := src.Read(buf)
			if k > 0 {
				pc.last.Store(time.Now().UnixNano())
				if _, werr := dst.Write(buf[:k]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(b, c)
	go pipe(c, b)
	<-done
	<-done
	p.net.mu.Lock()
	delete(p.net.conns, pc)
	p.net.mu.Unlock()
}

// owner finds which node's process dialed the connection whose far end is
// remote and near end local: the socket with local address remote in
// /proc/net/tcp gives an inode, and the node whose /proc/<pid>/fd holds
// that inode dialed it. -1 when it is not a node (or vanished meanwhile).
func (n *network) owner(remote, local net.Addr) int {
	ra, ok1 := remote.(*net.TCPAddr)
	la, ok2 := local.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return -1
	}
	pids := n.pidMap()
	for attempt := 0; attempt < 3; attempt++ {
		inode, err := socketInode(ra.Port, la.Port)
		if err == nil {
			for pid, node := range pids {
				if holdsSocket(pid, inode) {
					return node
				}
			}
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	n.unattributed.Add(1)
	return -1
}

var errNoSocket = errors.New("socket not found")

// socketInode returns the inode of the TCP socket bound to localPort and
// connected to remotePort (both on loopback).
func socketInode(localPort, remotePort int) (string, error) {
	want := fmt.Sprintf(":%04X", localPort)
	wantRem := fmt.Sprintf(":%04X", remotePort)
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 {
				continue
			}
			if strings.HasSuffix(fs[1], want) && strings.HasSuffix(fs[2], wantRem) && fs[9] != "0" {
				f.Close()
				return fs[9], nil
			}
		}
		f.Close()
	}
	return "", errNoSocket
}

func holdsSocket(pid int, inode string) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	want := "socket:[" + inode + "]"
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == want {
			return true
		}
	}
	return false
}
