// Command hftestfn is a static test function for images without a shell.
//
//	hftestfn cat        copy stdin to stdout
//	hftestfn bytes N    write N bytes ('a'..'z' repeated) to stdout
//	hftestfn sleep D    sleep for the Go duration D (e.g. 30s)
//	hftestfn exit N     exit with code N
//	hftestfn trap       print "ready" to stderr, wait for SIGTERM, exit 42
//	hftestfn env K      print the value of the environment variable K
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
	default:
		fail("unknown mode " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "hftestfn:", msg)
	os.Exit(2)
}
