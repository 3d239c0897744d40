// Command nomad-double runs the Nomad test double as a process of its own,
// so that a real hyperfunc agent (-nomad-addr) can be tested against
// Nomad's wire format end to end. It prints its address on stdout and
// serves a small control API on -control for fault injection:
//
//	POST /down?on=true|false        every request answers 500 "No cluster leader"
//	POST /unreachable?on=true|false connections are cut
//	POST /drop-streams              drop the open event streams
//	GET  /executions?call=<id>      how many times a call ran
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/hyperfunc/hyperfunc/nomadjob/nomadtest"
)

// procT gives the double the two methods it takes from *testing.T.
type procT struct{ cleanups []func() }

func (p *procT) Cleanup(f func()) { p.cleanups = append(p.cleanups, f) }
func (p *procT) Helper()          {}

func main() {
	control := flag.String("control", "127.0.0.1:0", "listen address of the control API")
	flag.Parse()
	t := &procT{}
	d := nomadtest.New(t)
	ln, err := net.Listen("tcp", *control)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /down", func(w http.ResponseWriter, r *http.Request) { d.SetDown(r.URL.Query().Get("on") == "true") })
	mux.HandleFunc("POST /unreachable", func(w http.ResponseWriter, r *http.Request) {
		d.SetUnreachable(r.URL.Query().Get("on") == "true")
	})
	mux.HandleFunc("POST /drop-streams", func(w http.ResponseWriter, r *http.Request) { d.DropEventStreams() })
	mux.HandleFunc("GET /executions", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, d.Executions(r.URL.Query().Get("call")))
	})
	go http.Serve(ln, mux)
	fmt.Printf("nomad=%s control=http://%s\n", d.URL, ln.Addr())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
