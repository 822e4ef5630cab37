package resources

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/httpapi"
	"github.com/shoal-p2p/shoal/internal/testring"
	"github.com/shoal-p2p/shoal/resource"
)

func do(t *testing.T, h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func errCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e httpapi.Error
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", w.Body, err)
	}
	return e.Code
}

// TestResourceRoutes: define a pool, acquire over HTTP on two nodes, see
// the holders in the listing, refuse a second holder and a wrong token,
// renew, release, and let an unrenewed lease expire.
func TestResourceRoutes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testring.New(t, testring.Options{Seed: 4, Nodes: 4, Attach: func(m *testring.Member) (any, func()) {
			cfg := resource.DefaultConfig()
			cfg.Holder = m.ID.String()
			cfg.TTL = 2 * time.Second
			cfg.DriftMargin = 200 * time.Millisecond
			rm, err := resource.New(m.KV, cfg)
			if err != nil {
				t.Fatalf("resource: %v", err)
			}
			s := httpapi.New(m.Node, nil)
			Register(s, rm)
			return s.Handler(), func() { rm.Close() }
		}})
		defer c.Close()
		a := c.Live()[0].Extra.(http.Handler)
		b := c.Live()[1].Extra.(http.Handler)

		if w := do(t, a, "GET", "/v1/resources/ips", ""); w.Code != 404 || errCode(t, w) != "unknown_pool" {
			t.Fatalf("unknown pool: %d %s", w.Code, w.Body)
		}
		if w := do(t, a, "PUT", "/v1/resources/ips", `{"names": 3}`); w.Code != 400 {
			t.Fatalf("bad define body: %d %s", w.Code, w.Body)
		}
		if w := do(t, a, "PUT", "/v1/resources/ips", `{"names": ["10.0.0.1", "10.0.0.2"]}`); w.Code != 200 {
			t.Fatalf("define: %d %s", w.Code, w.Body)
		}
		var l1, l2 Lease
		w := do(t, a, "POST", "/v1/resources/ips/acquire?name=10.0.0.1&holder=alice", "")
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &l1) != nil || l1.Token != 1 || !strings.HasSuffix(l1.Holder, "/alice") {
			t.Fatalf("acquire: %d %s", w.Code, w.Body)
		}
		if w := do(t, b, "POST", "/v1/resources/ips/acquire?name=10.0.0.1", ""); w.Code != 409 || errCode(t, w) != "held" {
			t.Fatalf("second holder: %d %s", w.Code, w.Body)
		}
		w = do(t, b, "POST", "/v1/resources/ips/acquire", "")
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &l2) != nil || l2.Name != "10.0.0.2" {
			t.Fatalf("acquire any: %d %s", w.Code, w.Body)
		}
		if w := do(t, b, "POST", "/v1/resources/ips/acquire", ""); w.Code != 409 || errCode(t, w) != "pool_exhausted" {
			t.Fatalf("exhausted pool: %d %s", w.Code, w.Body)
		}
		var ls Listing
		w = do(t, b, "GET", "/v1/resources/ips", "")
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &ls) != nil || len(ls.Resources) != 2 || ls.Resources[0].State != "held" || ls.Resources[0].Holder != l1.Holder {
			t.Fatalf("listing: %d %s", w.Code, w.Body)
		}
		if w := do(t, b, "POST", "/v1/resources/ips/10.0.0.1/release", `{"token": 9}`); w.Code != 409 || errCode(t, w) != "not_holder" {
			t.Fatalf("release with a wrong token: %d %s", w.Code, w.Body)
		}
		if w := do(t, b, "POST", "/v1/resources/ips/10.0.0.1/renew", `{"token": 1}`); w.Code != 200 {
			t.Fatalf("renew: %d %s", w.Code, w.Body)
		}
		if w := do(t, a, "POST", "/v1/resources/ips/10.0.0.9/release", `{"token": 1}`); w.Code != 404 {
			t.Fatalf("release of an unknown name: %d %s", w.Code, w.Body)
		}
		if w := do(t, a, "POST", "/v1/resources/ips/10.0.0.2/release", `{"token": 1}`); w.Code != 200 {
			t.Fatalf("release: %d %s", w.Code, w.Body)
		}
		// 10.0.0.1 is not renewed: after TTL + margin another node takes it
		// with a higher token.
		time.Sleep(3 * time.Second)
		var l3 Lease
		w = do(t, b, "POST", "/v1/resources/ips/acquire?name=10.0.0.1", "")
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &l3) != nil || l3.Token != 2 {
			t.Fatalf("take over an expired lease: %d %s", w.Code, w.Body)
		}
	})
}
