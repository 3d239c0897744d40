package shim

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// A sealing shim (-as) runs as root and starts the command as another
// user itself, so it does for that user what Docker does when it starts
// a container as the user: HOME from the image's /etc/passwd ("/" when
// the uid is not there) and the supplementary groups that /etc/group
// lists the user's name in. Otherwise the command would see root's HOME
// (/root, which it cannot write) and lose groups the image gave it.

// maxEtcFile bounds what is read of /etc/passwd and /etc/group (they are
// the image's: any size).
const maxEtcFile = 1 << 20

// ForUser fills cred's supplementary groups from root+"/etc/group" and
// returns the home directory of cred's uid from root+"/etc/passwd" ("/"
// when it is not listed, as Docker does). Unreadable files count as empty.
func ForUser(root string, cred *syscall.Credential) (home string) {
	home = "/"
	var name string
	eachLine(root+"/etc/passwd", func(f []string) bool {
		// name:password:uid:gid:gecos:home:shell
		if len(f) >= 6 && f[2] == strconv.FormatUint(uint64(cred.Uid), 10) {
			name = f[0]
			if f[5] != "" {
				home = f[5]
			}
			return false
		}
		return true
	})
	if name == "" {
		return home
	}
	groups := []uint32{}
	eachLine(root+"/etc/group", func(f []string) bool {
		// name:password:gid:member,member
		if len(f) < 4 {
			return true
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil || uint32(gid) == cred.Gid {
			return true
		}
		for _, m := range strings.Split(f[3], ",") {
			if m == name {
				groups = append(groups, uint32(gid))
				break
			}
		}
		return true
	})
	cred.Groups = groups
	return home
}

// eachLine calls f with the ":"-separated fields of each line of path
// (at most maxEtcFile bytes) until f returns false.
func eachLine(path string, f func([]string) bool) {
	// O_NONBLOCK and a regular file only: the image is the function
	// author's, and a FIFO there would hold the shim for ever.
	file, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return
	}
	defer file.Close()
	if fi, err := file.Stat(); err != nil || !fi.Mode().IsRegular() {
		return
	}
	sc := bufio.NewScanner(io.LimitReader(file, maxEtcFile))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !f(strings.Split(line, ":")) {
			return
		}
	}
}
