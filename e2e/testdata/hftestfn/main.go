// Command hftestfn is a static test function for images without a shell.
//
//	hftestfn cat        copy stdin to stdout
//	hftestfn bytes N    write N bytes ('a'..'z' repeated) to stdout
//	hftestfn sleep D    sleep for the Go duration D (e.g. 30s)
//	hftestfn exit N     exit with code N
//	hftestfn trap       print "ready" to stderr, wait for SIGTERM, exit 42
//	hftestfn env K      print the value of the environment variable K
//	hftestfn hostile    print "uid=U gid=G", try to forge the shim's seal on
//	                    /proc/1/fd/1 and to kill PID 1 (what failed goes to
//	                    stderr), leave a "linger" process in its own session
//	hftestfn linger     ignore SIGTERM and SIGHUP, hold stdout and try to forge
//	                    the seal every few milliseconds, for ever
//	hftestfn forkrace DIR [N]  leave N (1) chains of processes in their own
//	                    sessions, each forking the next and exiting at once; one
//	                    that finds DIR/result.json appends a byte to DIR/late
//	hftestfn breed DIR  one such chain (raw system calls only)
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: hftestfn cat|bytes N|sleep D|exit N|trap|env K")
	}
	arg := func() string {
		if len(os.Args) < 3 {
			fail(os.Args[1] + " needs an argument")
		}
		return os.Args[2]
	}
	switch os.Args[1] {
	case "cat":
		if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
			fail(err.Error())
		}
	case "bytes":
		n, err := strconv.ParseInt(arg(), 10, 64)
		if err != nil {
			fail(err.Error())
		}
		w := bufio.NewWriter(os.Stdout)
		for i := int64(0); i < n; i++ {
			if err := w.WriteByte(byte('a' + i%26)); err != nil {
				fail(err.Error())
			}
		}
		if err := w.Flush(); err != nil {
			fail(err.Error())
		}
	case "sleep":
		d, err := time.ParseDuration(arg())
		if err != nil {
			fail(err.Error())
		}
		time.Sleep(d)
	case "exit":
		n, err := strconv.Atoi(arg())
		if err != nil {
			fail(err.Error())
		}
		os.Exit(n)
	case "trap":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		fmt.Fprintln(os.Stderr, "ready")
		<-sigs
		fmt.Println("got SIGTERM")
		os.Exit(42)
	case "env":
		fmt.Println(os.Getenv(arg()))
	case "hostile":
		fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
		forge()
		fmt.Fprintln(os.Stderr, "kill 1:", syscall.Kill(1, syscall.SIGKILL))
		self, err := os.Executable()
		if err != nil {
			fail(err.Error())
		}
		p, err := os.StartProcess(self, []string{self, "linger"}, &os.ProcAttr{
			Files: []*os.File{nil, os.Stdout, os.Stderr},
			Sys:   &syscall.SysProcAttr{Setsid: true},
		})
		if err != nil {
			fail(err.Error())
		}
		_ = p.Release()
	case "forkrace":
		// Leave, in its own session, a chain of processes each of which
		// forks the next and exits at once: at any moment one or two are
		// alive, the next being born while the previous dies.
		self, err := os.Executable()
		if err != nil {
			fail(err.Error())
		}
		chains := 1
		if len(os.Args) > 3 {
			chains, _ = strconv.Atoi(os.Args[3])
		}
		for range chains {
			p, err := os.StartProcess(self, []string{self, "breed", arg()}, &os.ProcAttr{
				Sys: &syscall.SysProcAttr{Setsid: true},
			})
			if err != nil {
				fail(err.Error())
			}
			_ = p.Release()
		}
		time.Sleep(50 * time.Millisecond) // the chains under way
		fmt.Println("bred")
	case "breed":
		// arg() is the result dir: a process of the chain that finds
		// result.json there outlived the shim's end of every process
		// (the shim writes it only after that) and says so in DIR/late.
		res := append([]byte(arg()+"/result.json"), 0)
		late := append([]byte(arg()+"/late"), 0)
		var all [2]uint32
		all[0], all[1] = ^uint32(0), ^uint32(0)
		syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 0 /* SIG_BLOCK */, uintptr(unsafe.Pointer(&all)), 0, 8, 0, 0)
		breed(&res[0], &late[0])
	case "linger":
		signal.Ignore(syscall.SIGTERM, syscall.SIGHUP)
		for {
			_ = forgeOnce()
			time.Sleep(5 * time.Millisecond)
		}
	default:
		fail("unknown mode " + os.Args[1])
	}
}

// forged is what a hostile function would like the reader to take for the
// shim's seal (shim.SealPrefix).
const forged = "hf-shim: sealed forged\n"

func forge() {
	fmt.Fprintln(os.Stderr, "forge /proc/1/fd/1:", forgeOnce())
}

func forgeOnce() error {
	f, err := os.OpenFile("/proc/1/fd/1", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(forged)
	return err
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "hftestfn:", msg)
	os.Exit(2)
}

// breed forks the next process of the chain and exits; a process that
// finds res writes a byte to late first. Raw system calls only: the
// child of a raw fork of a Go program may not enter the runtime.
//
//go:nosplit
func breed(res, late *byte) {
	for {
		// Look for result.json a while (a survivor has until the
		// sandbox's end), then fork the next and exit.
		for i := 0; i < 100; i++ {
			if _, _, e := syscall.RawSyscall(syscall.SYS_ACCESS, uintptr(unsafe.Pointer(res)), 0, 0); e == 0 {
				fd, _, e := syscall.RawSyscall(syscall.SYS_OPEN, uintptr(unsafe.Pointer(late)), syscall.O_WRONLY|syscall.O_CREAT|syscall.O_APPEND, 0o666)
				if e == 0 {
					syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(res)), 1)
					syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0)
				}
			}
		}
		pid, _, errno := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
		if errno == 0 && pid == 0 {
			continue // the child carries on
		}
		if errno != 0 {
			continue // no fork (pids limit): try again
		}
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
}
