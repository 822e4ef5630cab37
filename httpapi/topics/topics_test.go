package topics

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/httpapi"
	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/pubsub"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// member is one node of the test ring with its pubsub and HTTP API.
type member struct {
	n   *node.Node
	ps  *pubsub.PubSub
	api *httpapi.Server
}

// startRing starts n nodes on a memnet network inside the caller's
// synctest bubble and lets the ring settle (in virtual time).
func startRing(t *testing.T, n int) []*member {
	t.Helper()
	net := memnet.New(memnet.Config{Seed: 5, Realtime: true, MinLatency: time.Millisecond, MaxLatency: 3 * time.Millisecond})
	rng := rand.New(rand.NewSource(5))
	var ms []*member
	var boot []transport.Peer
	for i := 0; i < n; i++ {
		var x id.ID
		rng.Read(x[:])
		cfg := node.DefaultConfig()
		cfg.Ring = ring.LocalConfig()
		cfg.Transport = net.Transport(x)
		cfg.Bootstrap = boot
		nd, err := node.Start(context.Background(), cfg)
		if err != nil {
			t.Fatalf("start node %d: %v", i, err)
		}
		ps, err := pubsub.New(nd, pubsub.LocalConfig())
		if err != nil {
			t.Fatalf("pubsub on node %d: %v", i, err)
		}
		api := httpapi.New(nd, nil)
		Register(api, ps)
		ms = append(ms, &member{n: nd, ps: ps, api: api})
		if i == 0 {
			boot = []transport.Peer{nd.Self()}
		}
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.ps.Close()
			m.n.Close()
		}
	})
	time.Sleep(5 * time.Second) // virtual: let the leaf sets settle
	return ms
}

func path(topic, route string) string {
	return "/v1/topics/" + url.PathEscape(topic) + "/" + route
}

// post sends a POST to m's API and returns the recorded response.
func post(m *member, topic, route string, body []byte) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	m.api.Handler().ServeHTTP(rec, httptest.NewRequest("POST", path(topic, route), bytes.NewReader(body)))
	return rec
}

func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	var e httpapi.Error
	if rec.Code != status || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Code != code || e.Error == "" {
		t.Fatalf("got %d %s, want %d with code %q", rec.Code, rec.Body, status, code)
	}
}

// sse is one event read from a stream.
type sse struct {
	event string
	data  string
}

// stream is an event stream served in memory: the handler writes into a
// pipe that a goroutine parses into events.
type stream struct {
	t      *testing.T
	hdr    http.Header
	code   int
	pw     *io.PipeWriter
	pr     *io.PipeReader
	events chan sse
	cancel context.CancelFunc
	done   chan struct{} // closed when the handler returned
}

func (s *stream) Header() http.Header         { return s.hdr }
func (s *stream) WriteHeader(code int)        { s.code = code }
func (s *stream) Write(b []byte) (int, error) { return s.pw.Write(b) }
func (s *stream) Flush()                      {}

func openStream(t *testing.T, m *member, topic string) *stream {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &stream{t: t, hdr: http.Header{}, code: 200, pw: pw, pr: pr, events: make(chan sse, 64), cancel: cancel, done: make(chan struct{})}
	req := httptest.NewRequest("GET", path(topic, "events"), nil).WithContext(ctx)
	go func() {
		m.api.Handler().ServeHTTP(s, req)
		pw.Close()
		close(s.done)
	}()
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(pr)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" || ev.data != "" {
					s.events <- ev
				}
				ev = sse{}
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case strings.HasPrefix(line, "{") || strings.HasPrefix(line, "}") || strings.HasPrefix(line, "  "):
				ev.data += line // a JSON error body
			}
		}
		if ev.data != "" {
			s.events <- ev
		}
	}()
	t.Cleanup(s.close)
	return s
}

// next returns the next event, failing the test after a (virtual) 10s.
func (s *stream) next() sse {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatal("stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		s.t.Fatal("no event within 10s")
	}
	return sse{}
}

// message returns the next "message" event's data.
func (s *stream) message() Event {
	s.t.Helper()
	for {
		ev := s.next()
		if ev.event != "message" {
			continue
		}
		var e Event
		if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
			s.t.Fatalf("bad event data %q: %v", ev.data, err)
		}
		return e
	}
}

// close disconnects the client and waits for the handler to return.
func (s *stream) close() {
	s.cancel()
	s.pr.Close()
	<-s.done
}

func TestPublishReachesEventStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := startRing(t, 6)
		const topic = "sensors/room 1" // a slash and a space: escaped in the path
		var streams []*stream
		for _, m := range ms[2:5] {
			s := openStream(t, m, topic)
			ev := s.next()
			var sub Subscribed
			if ev.event != "subscribed" || json.Unmarshal([]byte(ev.data), &sub) != nil || sub.Topic != topic || sub.Node != m.n.ID() {
				t.Fatalf("first event %+v, want subscribed to %q on %s (status %d)", ev, topic, m.n.ID().Short(), s.code)
			}
			if got := s.hdr.Get("Content-Type"); got != "text/event-stream" {
				t.Fatalf("Content-Type %q", got)
			}
			streams = append(streams, s)
		}

		rec := post(ms[0], topic, "publish", []byte("21.5 °C"))
		var pr PublishResult
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &pr) != nil || pr.Topic != topic || pr.Seq == 0 {
			t.Fatalf("publish: %d %s", rec.Code, rec.Body)
		}
		binary := []byte{0xff, 0x00, 0xfe}
		rec = post(ms[1], topic, "publish", binary)
		var pr2 PublishResult
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &pr2) != nil || pr2.Seq <= pr.Seq {
			t.Fatalf("second publish: %d %s (first seq %d)", rec.Code, rec.Body, pr.Seq)
		}
		for i, s := range streams {
			e := s.message()
			if e.Topic != topic || e.Seq != pr.Seq || e.Data == nil || *e.Data != "21.5 °C" || e.DataBase64 != nil || e.Publisher != ms[0].n.ID() || e.Anycast {
				t.Fatalf("stream %d: first message %+v", i, e)
			}
			e = s.message()
			b, err := e.Bytes()
			if e.Seq != pr2.Seq || e.Data != nil || e.DataBase64 == nil || err != nil || !bytes.Equal(b, binary) || e.Publisher != ms[1].n.ID() {
				t.Fatalf("stream %d: binary message %+v (%v)", i, e, err)
			}
		}
	})
}

func TestAnycastAndDisconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := startRing(t, 6)
		const topic = "jobs"
		rec := post(ms[0], topic, "anycast", []byte("nobody home"))
		wantError(t, rec, http.StatusNotFound, "no_subscribers")

		a, b := openStream(t, ms[3], topic), openStream(t, ms[4], topic)
		a.next()
		b.next()
		rec = post(ms[0], topic, "anycast", []byte("job 1"))
		var ar AnycastResult
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &ar) != nil || ar.Topic != topic || ar.Addrs == nil {
			t.Fatalf("anycast: %d %s", rec.Code, rec.Body)
		}
		var taker, other *stream
		switch ar.AcceptedBy {
		case ms[3].n.ID():
			taker, other = a, b
		case ms[4].n.ID():
			taker, other = b, a
		default:
			t.Fatalf("accepted by %s, not a subscriber", ar.AcceptedBy.Short())
		}
		if e := taker.message(); !e.Anycast || e.Data == nil || *e.Data != "job 1" {
			t.Fatalf("taker got %+v", e)
		}
		time.Sleep(time.Second)
		select {
		case ev := <-other.events:
			t.Fatalf("the other subscriber got %+v too", ev)
		default:
		}

		// Both clients go away: their subscriptions end, and an anycast
		// finds nobody again once the tree has heard.
		a.close()
		b.close()
		var last *httptest.ResponseRecorder
		for range 20 {
			time.Sleep(500 * time.Millisecond)
			last = post(ms[0], topic, "anycast", []byte("job 2"))
			if last.Code == http.StatusNotFound {
				break
			}
		}
		wantError(t, last, http.StatusNotFound, "no_subscribers")
	})
}

func TestErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := startRing(t, 3)
		long := strings.Repeat("t", 4096)
		wantError(t, post(ms[0], long, "publish", []byte("x")), http.StatusBadRequest, "bad_topic")
		wantError(t, post(ms[0], long, "anycast", []byte("x")), http.StatusBadRequest, "bad_topic")
		s := openStream(t, ms[1], long)
		if ev := s.next(); s.code != http.StatusBadRequest || !strings.Contains(ev.data, "bad_topic") {
			t.Fatalf("events with a bad topic: %d %+v", s.code, ev)
		}

		wantError(t, post(ms[0], "t", "publish", make([]byte, MaxBody+1)), http.StatusRequestEntityTooLarge, "too_large")
		wantError(t, post(ms[0], "t", "publish", make([]byte, 1<<20+1)), http.StatusRequestEntityTooLarge, "too_large")
		wantError(t, post(ms[0], "t", "anycast", make([]byte, 1<<20+1)), http.StatusRequestEntityTooLarge, "too_large")

		ms[2].ps.Close()
		rec := post(ms[2], "t", "publish", []byte("x"))
		wantError(t, rec, http.StatusServiceUnavailable, "closed")
		if rec.Header().Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
	})
}

func TestServerCloseEndsStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := startRing(t, 2)
		s := openStream(t, ms[1], "news")
		s.next()
		ms[1].api.Close(context.Background())
		select {
		case <-s.done:
		case <-time.After(time.Second):
			t.Fatal("stream still open after the server closed")
		}
	})
}

func TestNewEvent(t *testing.T) {
	cases := []struct {
		data []byte
		want string
	}{
		{[]byte("hi"), `"data":"hi"`},
		{[]byte{}, `"data":""`},
		{[]byte{0xc3, 0x28}, `"data_base64":"wyg="`},
	}
	for _, c := range cases {
		b, _ := json.Marshal(NewEvent(&pubsub.Delivery{Topic: "t", Seq: 3, Data: c.data}))
		if !strings.Contains(string(b), c.want) {
			t.Errorf("%q: %s lacks %s", c.data, b, c.want)
		}
	}
}
