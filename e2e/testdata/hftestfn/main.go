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
