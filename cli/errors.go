package cli

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/hyperfunc/hyperfunc/api"
)

// describe turns an error into the one line the user reads after "Error: ".
// Transport errors name the address tried; API errors show the server's
// message, with a hint for authentication failures.
func (a *app) describe(err error) string {
	var goes *goesOnError
	if errors.As(err, &goes) {
		return a.describe(goes.err) + "\nThe call " + goes.id + " was queued and goes on; fetch its output with: hyper func get --wait " + goes.id
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		msg := ae.Message
		switch ae.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			msg += " (check --token, HYPER_TOKEN or the config file)"
		}
		if ae.CallID != "" && !strings.Contains(msg, ae.CallID) {
			msg += " (call " + ae.CallID + ")"
		}
		return msg
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return "cannot reach hyperfunc at " + a.address() + ": " + rootCause(op.Err)
		}
		return "talking to hyperfunc at " + a.address() + ": " + rootCause(ue.Err)
	}
	return err.Error()
}

// rootCause is the most specific text of a network error: "connection
// refused" rather than "dial tcp 127.0.0.1:4680: connect: connection refused".
func rootCause(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Error()
	}
	return err.Error()
}
