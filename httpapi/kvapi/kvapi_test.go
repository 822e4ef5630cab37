package kvapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/httpapi"
	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// testRing is a small memnet ring with a KV and an HTTP handler on every
// node. Run it inside a synctest bubble: its timings are virtual.
type testRing struct {
	t     *testing.T
	net   *memnet.Network
	nodes []*node.Node
	kvs   []*kv.KV
	hs    []http.Handler
}

func newTestRing(t *testing.T, n int) *testRing {
	t.Helper()
	r := &testRing{t: t, net: memnet.New(memnet.Config{Seed: 7, Realtime: true, MinLatency: time.Millisecond, MaxLatency: 3 * time.Millisecond})}
	rng := rand.New(rand.NewSource(7))
	var boot []transport.Peer
	for i := 0; i < n; i++ {
		var x id.ID
		rng.Read(x[:])
		cfg := node.DefaultConfig()
		cfg.Ring = ring.LocalConfig()
		cfg.Transport = r.net.Transport(x)
		cfg.Bootstrap = boot
		nd, err := node.Start(context.Background(), cfg)
		if err != nil {
			t.Fatalf("start node %d: %v", i, err)
		}
		kcfg := kv.DefaultConfig()
		kcfg.Store = kv.NewMemStore()
		kcfg.Genesis = i == 0
		kcfg.SyncInterval = 2 * time.Second
		// RoundTimeout below Retry.PerAttempt: a client's retry that reaches
		// the owner while its previous attempt's round still runs is
		// answered "internal" by kv today (kv/queued_test.go), which would
		// turn TestUnavailable's 503 into a 500.
		kcfg.RoundTimeout = 300 * time.Millisecond
		kcfg.Retry.PerAttempt = 400 * time.Millisecond
		kcfg.Retry.Overall = 3 * time.Second
		k, err := kv.New(nd, kcfg)
		if err != nil {
			t.Fatalf("start kv %d: %v", i, err)
		}
		s := httpapi.New(nd, nil)
		Register(s, k)
		r.nodes, r.kvs, r.hs = append(r.nodes, nd), append(r.kvs, k), append(r.hs, s.Handler())
		if i == 0 {
			boot = []transport.Peer{nd.Self()}
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // virtual: leaf sets settle, ranges synchronise
	return r
}

func (r *testRing) close() {
	for i := range r.nodes {
		r.kvs[i].Close()
		r.nodes[i].Close()
	}
}

// do sends one request to node i's handler.
func (r *testRing) do(i int, method, path string, body io.Reader, hdr ...string) *httptest.ResponseRecorder {
	r.t.Helper()
	req := httptest.NewRequest(method, path, body)
	for j := 0; j+1 < len(hdr); j += 2 {
		req.Header.Add(hdr[j], hdr[j+1])
	}
	rec := httptest.NewRecorder()
	r.hs[i].ServeHTTP(rec, req)
	return rec
}

// expect checks a response's status, error code (for errors) and ETag
// ("" = none).
func expect(t *testing.T, what string, rec *httptest.ResponseRecorder, status int, code, etag string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, rec.Code, status, rec.Body)
	}
	if got := rec.Header().Get("ETag"); got != etag {
		t.Fatalf("%s: ETag %q, want %q", what, got, etag)
	}
	if status < 400 {
		return
	}
	var e httpapi.Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != code || e.Error == "" {
		t.Fatalf("%s: error body %s, want code %q (%v)", what, rec.Body, code, err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: error Content-Type %q", what, ct)
	}
}

func writeResult(t *testing.T, rec *httptest.ResponseRecorder) WriteResult {
	t.Helper()
	var wr WriteResult
	if err := json.Unmarshal(rec.Body.Bytes(), &wr); err != nil {
		t.Fatalf("write result %s: %v", rec.Body, err)
	}
	return wr
}

// absent checks through the store itself that key has no value.
func (r *testRing) absent(key string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if it, err := r.kvs[1].Get(ctx, key); !errors.Is(err, kv.ErrNotFound) {
		r.t.Fatalf("%q should not exist: %+v %v", key, it, err)
	}
}

func TestReadWriteAndConditions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTestRing(t, 4)
		defer r.close()

		expect(t, "GET absent", r.do(0, "GET", "/v1/kv/k", nil), 404, "not_found", "")

		rec := r.do(0, "PUT", "/v1/kv/k", strings.NewReader("one"))
		expect(t, "PUT", rec, 200, "", `"1"`)
		if wr := writeResult(t, rec); wr.Key != "k" || wr.Version != 1 {
			t.Fatalf("PUT result %+v", wr)
		}
		for i := range r.hs {
			rec = r.do(i, "GET", "/v1/kv/k", nil)
			expect(t, fmt.Sprintf("GET via node %d", i), rec, 200, "", `"1"`)
			if rec.Body.String() != "one" || rec.Header().Get("Content-Type") != "application/octet-stream" {
				t.Fatalf("GET via node %d: %q %q", i, rec.Body, rec.Header().Get("Content-Type"))
			}
		}
		rec = r.do(2, "GET", "/v1/kv/k?stale=true", nil)
		expect(t, "stale GET", rec, 200, "", `"1"`)
		if rec.Body.String() != "one" {
			t.Fatalf("stale GET body %q", rec.Body)
		}
		expect(t, "bad ?stale", r.do(2, "GET", "/v1/kv/k?stale=maybe", nil), 400, "bad_request", "")
		expect(t, "GET If-None-Match current", r.do(1, "GET", "/v1/kv/k", nil, "If-None-Match", `"1"`), 304, "", `"1"`)

		// Compare-and-set.
		expect(t, "PUT If-Match wrong", r.do(1, "PUT", "/v1/kv/k", strings.NewReader("x"), "If-Match", `"7"`), 412, "version_mismatch", `"1"`)
		expect(t, "PUT If-Match right", r.do(1, "PUT", "/v1/kv/k", strings.NewReader("two"), "If-Match", `"1"`), 200, "", `"2"`)
		expect(t, "PUT If-Match stale", r.do(3, "PUT", "/v1/kv/k", strings.NewReader("x"), "If-Match", `"1"`), 412, "version_mismatch", `"2"`)
		expect(t, "PUT create-only, exists", r.do(2, "PUT", "/v1/kv/k", strings.NewReader("x"), "If-None-Match", "*"), 412, "version_mismatch", `"2"`)
		expect(t, "PUT create-only, new", r.do(2, "PUT", "/v1/kv/fresh", strings.NewReader("new"), "If-None-Match", "*"), 200, "", `"1"`)
		expect(t, "PUT If-Match on absent key", r.do(2, "PUT", "/v1/kv/nothing", strings.NewReader("x"), "If-Match", `"1"`), 412, "version_mismatch", "")
		r.absent("nothing")

		// Preconditions that are not versions: refused, nothing stored.
		for _, h := range [][]string{
			{"If-Match", `"abc"`}, {"If-Match", `W/"2"`}, {"If-Match", `"1", "2"`}, {"If-Match", "*"}, {"If-Match", `""`}, {"If-Match", `"-1"`},
			{"If-None-Match", `"2"`}, {"If-Match", `"2"`, "If-None-Match", "*"},
		} {
			expect(t, fmt.Sprintf("PUT %q", h), r.do(0, "PUT", "/v1/kv/k", strings.NewReader("bad"), h...), 400, "bad_precondition", "")
		}
		rec = r.do(0, "GET", "/v1/kv/k", nil)
		if rec.Body.String() != "two" {
			t.Fatalf("a refused write changed the value: %q", rec.Body)
		}
		expect(t, "GET If-None-Match garbage", r.do(0, "GET", "/v1/kv/k", nil, "If-None-Match", "nope"), 400, "bad_precondition", "")

		// Delete.
		expect(t, "DELETE If-Match wrong", r.do(3, "DELETE", "/v1/kv/k", nil, "If-Match", `"9"`), 412, "version_mismatch", `"2"`)
		expect(t, "DELETE If-None-Match", r.do(3, "DELETE", "/v1/kv/k", nil, "If-None-Match", "*"), 400, "bad_precondition", "")
		expect(t, "DELETE If-Match bad", r.do(3, "DELETE", "/v1/kv/k", nil, "If-Match", "two"), 400, "bad_precondition", "")
		rec = r.do(3, "DELETE", "/v1/kv/k", nil, "If-Match", `"2"`)
		expect(t, "DELETE If-Match right", rec, 200, "", "")
		if wr := writeResult(t, rec); wr.Version != 3 || !wr.Deleted {
			t.Fatalf("DELETE result %+v", wr)
		}
		expect(t, "GET deleted", r.do(0, "GET", "/v1/kv/k", nil), 404, "not_found", "")
		expect(t, "DELETE If-Match on deleted", r.do(0, "DELETE", "/v1/kv/k", nil, "If-Match", `"3"`), 412, "version_mismatch", "")
		expect(t, "re-create continues versions", r.do(1, "PUT", "/v1/kv/k", strings.NewReader("again"), "If-None-Match", "*"), 200, "", `"4"`)
		expect(t, "unconditional DELETE", r.do(1, "DELETE", "/v1/kv/fresh", nil), 200, "", "")
		expect(t, "POST", r.do(1, "POST", "/v1/kv/k", nil), 405, "method_not_allowed", "")
	})
}

func TestKeysInPaths(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTestRing(t, 3)
		defer r.close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cases := []struct{ path, key string }{
			{"/v1/kv/plain", "plain"},
			{"/v1/kv/a/b/c", "a/b/c"},
			{"/v1/kv/a%2Fb", "a/b"},
			{"/v1/kv/a%2F%2Fb", "a//b"},
			{"/v1/kv/..%2Fx", "../x"},
			{"/v1/kv/dir%2F", "dir/"},
			{"/v1/kv/hello%20world", "hello world"},
			{"/v1/kv/%C3%BCber%3Fq%3D1%23f", "über?q=1#f"},
			{"/v1/kv/100%25", "100%"},
		}
		for i, c := range cases {
			val := fmt.Sprintf("value %d", i)
			expect(t, "PUT "+c.path, r.do(i%3, "PUT", c.path, strings.NewReader(val)), 200, "", `"1"`)
			it, err := r.kvs[(i+1)%3].Get(ctx, c.key)
			if err != nil || string(it.Value) != val {
				t.Fatalf("%s stored under the wrong key: Get(%q) = %+v, %v", c.path, c.key, it, err)
			}
			rec := r.do((i+2)%3, "GET", c.path, nil)
			if rec.Code != 200 || rec.Body.String() != val {
				t.Fatalf("GET %s: %d %q", c.path, rec.Code, rec.Body)
			}
		}
		expect(t, "empty key", r.do(0, "PUT", "/v1/kv/", strings.NewReader("x")), 400, "bad_key", "")
		expect(t, "empty key GET", r.do(0, "GET", "/v1/kv/", nil), 400, "bad_key", "")
		expect(t, "key not UTF-8", r.do(0, "PUT", "/v1/kv/%FF%FE", strings.NewReader("x")), 400, "bad_key", "")
		long := strings.Repeat("k", kv.DefaultConfig().MaxKey+1)
		expect(t, "key too long", r.do(0, "PUT", "/v1/kv/"+long, strings.NewReader("x")), 400, "bad_key", "")
		expect(t, "owner of a bad key", r.do(0, "GET", "/v1/owner/", nil), 400, "bad_key", "")
		r.absent(long[:kv.DefaultConfig().MaxKey])
	})
}

func TestOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTestRing(t, 5)
		defer r.close()
		key := "a key/with slash"
		rec := r.do(3, "GET", "/v1/owner/a%20key%2Fwith%20slash", nil)
		expect(t, "GET owner", rec, 200, "", "")
		var p Placement
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		ids := make([]id.ID, len(r.nodes))
		byID := map[id.ID]*node.Node{}
		for i, n := range r.nodes {
			ids[i] = n.ID()
			byID[n.ID()] = n
		}
		want := ids[id.Closest(kv.KeyID(key), ids)]
		if p.Key != key || p.ID != kv.KeyID(key) || p.Owner.ID != want || len(p.Owner.Addrs) == 0 {
			t.Fatalf("placement %+v; want key %q id %s owner %s with addresses", p, key, kv.KeyID(key), want.Short())
		}
		if len(p.Replicas) != 3 || p.Replicas[0].ID != want {
			t.Fatalf("replicas %+v: want 3, the owner first", p.Replicas)
		}
		seen := map[id.ID]bool{}
		for _, q := range p.Replicas {
			if byID[q.ID] == nil || seen[q.ID] || len(q.Addrs) == 0 {
				t.Fatalf("replica %+v: not a distinct ring member with addresses", q)
			}
			seen[q.ID] = true
		}
		raw := map[string]any{}
		_ = json.Unmarshal(rec.Body.Bytes(), &raw)
		for _, f := range []string{"key", "id", "owner", "replicas"} {
			if _, ok := raw[f]; !ok {
				t.Fatalf("owner JSON lacks %q: %s", f, rec.Body)
			}
		}
		expect(t, "PUT owner", r.do(3, "PUT", "/v1/owner/x", nil), 405, "method_not_allowed", "")
	})
}

// TestStore: GET /v1/store says whether the node has copied every range it
// replicates; on a settled ring every node has.
func TestStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTestRing(t, 5)
		defer r.close()
		for i := range r.nodes {
			var st Store
			for range 100 { // 10 s of ring time
				rec := r.do(i, "GET", "/v1/store", nil)
				expect(t, "GET store", rec, 200, "", "")
				if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
					t.Fatal(err)
				}
				if st.Synchronised {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if !st.Synchronised {
				t.Fatalf("node %d of a settled ring: not synchronised after 10s", i)
			}
		}
		expect(t, "POST store", r.do(0, "POST", "/v1/store", nil), 405, "method_not_allowed", "")
	})
}

// cutShort is a request body that ends before its Content-Length, the way
// net/http reports a client that went away mid-body.
type cutShort struct{ r io.Reader }

func (c *cutShort) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func TestBodies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTestRing(t, 3)
		defer r.close()

		// Over the limit by Content-Length: refused before reading.
		req := httptest.NewRequest("PUT", "/v1/kv/big", strings.NewReader("small"))
		req.ContentLength = MaxValue + 1
		rec := httptest.NewRecorder()
		r.hs[0].ServeHTTP(rec, req)
		expect(t, "Content-Length over the limit", rec, 413, "too_large", "")
		// Over the limit without a length (chunked).
		big := bytes.Repeat([]byte("x"), MaxValue+1)
		req = httptest.NewRequest("PUT", "/v1/kv/big", io.MultiReader(bytes.NewReader(big)))
		req.ContentLength = -1
		rec = httptest.NewRecorder()
		r.hs[0].ServeHTTP(rec, req)
		expect(t, "chunked body over the limit", rec, 413, "too_large", "")
		r.absent("big")

		// Cut short.
		req = httptest.NewRequest("PUT", "/v1/kv/short", &cutShort{strings.NewReader("abc")})
		req.ContentLength = 10
		rec = httptest.NewRecorder()
		r.hs[1].ServeHTTP(rec, req)
		expect(t, "body cut short", rec, 400, "bad_request", "")
		r.absent("short")

		// An empty body is an empty value.
		expect(t, "empty value", r.do(2, "PUT", "/v1/kv/empty", nil), 200, "", `"1"`)
		rec = r.do(0, "GET", "/v1/kv/empty", nil)
		if rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != "0" {
			t.Fatalf("GET empty value: %d %q %q", rec.Code, rec.Body, rec.Header().Get("Content-Length"))
		}
	})
}

// pipeListener is a net.Listener of in-memory connections, so a real
// http.Server runs inside a synctest bubble (blocking on a pipe is durable;
// blocking on a socket is not).
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial() (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// TestOverTheWire sends raw HTTP to a real server: a client that hangs up
// before the body it announced is complete stores nothing, and a complete
// request stores its value.
func TestOverTheWire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTestRing(t, 3)
		defer r.close()
		ln := newPipeListener()
		srv := &http.Server{Handler: r.hs[0], ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()

		// Announce 100 bytes, send 5, hang up.
		c, err := ln.dial()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, _ = io.WriteString(c, "PUT /v1/kv/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhello")
			c.Close()
		}()
		time.Sleep(2 * time.Second) // virtual: the server gives up on the body
		r.absent("cut")

		// A complete request, on a connection the client keeps open. (A
		// variable of its own: the goroutine above still reads c, and
		// virtual time orders nothing for the race detector.)
		c2, err := ln.dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		go func() {
			_, _ = io.WriteString(c2, "PUT /v1/kv/whole HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nIf-None-Match: *\r\n\r\nhello")
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get("ETag") != `"1"` {
			t.Fatalf("complete PUT: %d %s %s", resp.StatusCode, resp.Header.Get("ETag"), b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if it, err := r.kvs[2].Get(ctx, "whole"); err != nil || string(it.Value) != "hello" {
			t.Fatalf("complete PUT not stored: %+v %v", it, err)
		}
	})
}

// TestUnavailable: with two of three replicas gone, reads and writes answer
// 503 with Retry-After, and the owner query still answers or says 503.
func TestUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newTestRing(t, 3)
		defer r.close()
		expect(t, "PUT before", r.do(0, "PUT", "/v1/kv/k", strings.NewReader("v")), 200, "", `"1"`)
		for _, n := range r.nodes[1:] {
			r.net.Crash(n.ID())
		}
		for _, c := range []struct{ method, path string }{{"PUT", "/v1/kv/k"}, {"GET", "/v1/kv/k"}, {"DELETE", "/v1/kv/k"}} {
			rec := r.do(0, c.method, c.path, strings.NewReader("w"))
			expect(t, c.method+" without a majority", rec, 503, "unavailable", "")
			if ra := rec.Header().Get("Retry-After"); ra == "" {
				t.Fatalf("%s 503 without Retry-After", c.method)
			}
		}
	})
}

func TestETag(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{`"7"`, 7, true}, {`7`, 7, true}, {` "18446744073709551615" `, 1<<64 - 1, true},
		{`"18446744073709551616"`, 0, false}, {`W/"7"`, 0, false}, {`"+7"`, 0, false}, {`"-1"`, 0, false},
		{`""`, 0, false}, {``, 0, false}, {`"7`, 0, false}, {`"a"`, 0, false}, {`"1","2"`, 0, false},
	} {
		v, err := ParseETag(c.in)
		if (err == nil) != c.ok || v != c.want {
			t.Errorf("ParseETag(%q) = %d, %v; want %d ok=%v", c.in, v, err, c.want, c.ok)
		}
		if c.ok && ETag(v) != `"`+fmt.Sprint(c.want)+`"` {
			t.Errorf("ETag(%d) = %s", v, ETag(v))
		}
	}
}

func TestMaxValueIsTheStoresDefault(t *testing.T) {
	if MaxValue != kv.DefaultConfig().MaxValue {
		t.Fatalf("MaxValue %d, kv's default %d", MaxValue, kv.DefaultConfig().MaxValue)
	}
}
