package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestNewClientNormalizesAddress(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:4680":         "http://127.0.0.1:4680",
		"http://127.0.0.1:4680/": "http://127.0.0.1:4680",
		"https://h.example:443":  "https://h.example:443",
	} {
		c, err := NewClient(&Config{Address: in})
		if err != nil || c.Address() != want {
			t.Errorf("%q: %v %q", in, err, c.Address())
		}
	}
	if _, err := NewClient(&Config{Address: "http://"}); err == nil {
		t.Error("an address without a host must be refused")
	}
}

func TestErrorsCarryStatusAndMessage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"missing token"}`))
			return
		}
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("plain text from a proxy"))
	}))
	defer srv.Close()
	c, _ := NewClient(&Config{Address: srv.URL})
	_, _, err := c.Functions().Info(context.Background(), "f", nil)
	var ae *Error
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Message != "missing token" {
		t.Fatalf("got %v", err)
	}
	c, _ = NewClient(&Config{Address: srv.URL, Token: "s3cret"})
	_, _, err = c.Functions().Info(context.Background(), "f", nil)
	if StatusCode(err) != 502 || !errors.As(err, &ae) || ae.Message != "plain text from a proxy" {
		t.Fatalf("got %v", err)
	}
}
