package jepsen

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Owners attributes loopback TCP connections to the processes that opened
// them. Every node's traffic reaches the others' proxies from 127.0.0.1 on
// an ephemeral port, so the source address alone cannot say which node is
// talking; the kernel can: /proc/net/tcp maps the client end of the
// connection to a socket inode, and /proc/<pid>/fd says which of our node
// processes holds that inode. Linux only.
type Owners struct {
	mu   sync.Mutex
	pids map[int]string // pid -> node ID
}

// NewOwners returns an empty attribution table.
func NewOwners() *Owners { return &Owners{pids: map[int]string{}} }

// Set records that pid is node id (a restarted node has a new pid).
func (o *Owners) Set(pid int, id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for p, n := range o.pids {
		if n == id {
			delete(o.pids, p)
		}
	}
	o.pids[pid] = id
}

// Remove forgets pid.
func (o *Owners) Remove(pid int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.pids, pid)
}

// Identify returns the node that owns the client end of the connection a
// proxy accepted: remote is the client end, local the proxy's. It returns
// "" when no known process owns it (it died, or it is not a node).
func (o *Owners) Identify(remote, local net.Addr) string {
	o.mu.Lock()
	pids := make(map[int]string, len(o.pids))
	for p, n := range o.pids {
		pids[p] = n
	}
	o.mu.Unlock()
	// The client end is normally in the table before accept returns; a
	// short retry covers reading /proc while it changes.
	for attempt := 0; attempt < 3; attempt++ {
		inode, err := socketInode(remote, local)
		if err == nil {
			for pid, id := range pids {
				if ownsSocket(pid, inode) {
					return id
				}
			}
			return ""
		}
		time.Sleep(5 * time.Millisecond)
	}
	return ""
}

// socketInode finds the inode of the TCP socket whose local end is local
// and remote end is remote, in /proc/net/tcp (and tcp6 for mapped v4).
func socketInode(local, remote net.Addr) (string, error) {
	la, ok1 := local.(*net.TCPAddr)
	ra, ok2 := remote.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return "", fmt.Errorf("jepsen: not TCP addresses: %v %v", local, remote)
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		inode, err := findInode(table, la, ra)
		if err == nil && inode != "" {
			return inode, nil
		}
	}
	return "", fmt.Errorf("jepsen: no socket %v -> %v in /proc/net/tcp", local, remote)
}

func findInode(table string, local, remote *net.TCPAddr) (string, error) {
	data, err := os.ReadFile(table)
	if err != nil {
		return "", err
	}
	v6 := strings.HasSuffix(table, "6")
	wantL, wantR := procAddr(local, v6), procAddr(remote, v6)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		if f[1] == wantL && f[2] == wantR && f[9] != "0" {
			return f[9], nil
		}
	}
	return "", sc.Err()
}

// procAddr formats an address the way /proc/net/tcp{,6} prints it: the
// address as native-endian 32-bit words in hex, then the port in hex.
func procAddr(a *net.TCPAddr, v6 bool) string {
	port := fmt.Sprintf("%04X", a.Port)
	if !v6 {
		ip4 := a.IP.To4()
		if ip4 == nil {
			return ""
		}
		return fmt.Sprintf("%08X", binary.LittleEndian.Uint32(ip4)) + ":" + port
	}
	ip := a.IP.To16()
	var b strings.Builder
	for i := 0; i < 16; i += 4 {
		b.WriteString(strings.ToUpper(hex.EncodeToString([]byte{ip[i+3], ip[i+2], ip[i+1], ip[i]})))
	}
	return b.String() + ":" + port
}

// ownsSocket reports whether pid holds a descriptor for socket inode.
func ownsSocket(pid int, inode string) bool {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	want := "socket:[" + inode + "]"
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == want {
			return true
		}
	}
	return false
}
