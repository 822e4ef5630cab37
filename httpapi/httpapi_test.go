package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

func TestRingAndErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := memnet.New(memnet.Config{Realtime: true})
		var x id.ID
		x[0] = 0x42
		cfg := node.DefaultConfig()
		cfg.Ring = ring.LocalConfig()
		cfg.Transport = net.Transport(x)
		n, err := node.Start(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		s := New(n, nil)
		h := s.Handler()

		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/ring", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET /v1/ring: %d %s", rec.Code, rec.Body)
		}
		var info RingInfo
		if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil {
			t.Fatal(err)
		}
		if info.ID != x || !info.Ready || !info.Owns.Whole || len(info.Addrs) == 0 || info.LeafLeft == nil {
			t.Fatalf("unexpected ring info: %+v", info)
		}

		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/nope", nil))
		var e Error
		if rec.Code != http.StatusNotFound || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Code != "not_found" || e.Error == "" {
			t.Fatalf("unknown route: %d %s", rec.Code, rec.Body)
		}
		// It names the routes there are, those added later included.
		if !strings.Contains(e.Error, "GET /v1/ring") || !strings.Contains(e.Error, "GET /v1/health") {
			t.Fatalf("unknown route: the error does not list the routes: %q", e.Error)
		}
		s.Handle("GET /v1/extra", func(w http.ResponseWriter, r *http.Request) {})
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/nope", nil))
		if !strings.Contains(rec.Body.String(), "GET /v1/extra") {
			t.Fatalf("unknown route: a route added later is not listed: %s", rec.Body)
		}
	})
}

func TestUnavailableHasRetryAfter(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteUnavailable(rec, "no_quorum", "cannot reach a majority", 1500e6)
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "2" {
		t.Fatalf("got %d Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
}
