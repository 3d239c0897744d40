package cachestore

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// bbolt reads through a shared, read-only mapping of its file. Every page a
// read touches (a snapshot streams them all) stays in this process's page
// tables, so it counts as resident memory (RssFile) although it is clean
// page cache the kernel could drop, and mapped pages are the kind it is
// slowest to reclaim. Trim hands them back: MADV_DONTNEED on a shared file
// mapping only drops this process's mappings of the pages; the data stays
// in the file and in the page cache, and the next read faults it in again.

// Trim unmaps the pages of the file that reads left resident. It holds a
// read transaction meanwhile: bbolt cannot remap under it, so the ranges
// read from /proc/self/maps stay the file's until the madvise is done.
func (d *DB) Trim() error {
	d.written.Store(0)
	tx, err := d.bolt.Begin(false)
	if err != nil {
		return fmt.Errorf("cache store trim: %w", err)
	}
	defer tx.Rollback()
	ranges, err := mappings(d.path)
	if err != nil {
		return err
	}
	for _, r := range ranges {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED); errno != 0 {
			return fmt.Errorf("cache store trim: madvise: %w", errno)
		}
	}
	return nil
}

// WrittenSinceTrim is the bytes of pages written since the last Trim, a
// measure of what writes left mapped: a caller trims when it passes a
// budget rather than only on a clock.
func (d *DB) WrittenSinceTrim() int64 { return d.written.Load() }

// mappings lists the address ranges [start, end) that map path.
func mappings(path string) ([][2]uintptr, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("cache store trim: %w", err)
	}
	defer f.Close()
	var out [][2]uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) != 6 || fields[5] != path {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, [2]uintptr{uintptr(start), uintptr(end)})
	}
	return out, sc.Err()
}
