package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-p2p/shoal/httpapi"
)

func TestPubSubUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"pub"}, "need TOPIC and MESSAGE, got 0"},
		{[]string{"pub", "news"}, "need TOPIC and MESSAGE, got 1"},
		{[]string{"pub", "news", "hello", "world"}, `unexpected argument "world"`},
		{[]string{"pub", "", "hello"}, "TOPIC must not be empty"},
		{[]string{"anycast", "jobs"}, "need TOPIC and MESSAGE"},
		{[]string{"sub"}, "need TOPIC, got 0"},
		{[]string{"sub", "news", "extra"}, `unexpected argument "extra"`},
		{[]string{"sub", "news", "--count", "-1"}, "--count must be >= 0"},
		{[]string{"sub", "news", "--bogus"}, "flag provided but not defined"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("shoal %q: exit %d, stderr %q; want exit 2 and %q", c.args, code, errb.String(), c.want)
		}
	}
}

// fakeNode serves the topic routes the way a node does, without a ring.
func fakeNode(t *testing.T) (*httptest.Server, *[]string) {
	var got []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/topics/{topic}/publish", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.PathValue("topic")+"="+string(b))
		httpapi.WriteJSON(w, 200, map[string]any{"topic": r.PathValue("topic"), "seq": 7})
	})
	mux.HandleFunc("POST /v1/topics/{topic}/anycast", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("topic") == "empty" {
			httpapi.WriteError(w, http.StatusNotFound, "no_subscribers", "pubsub: no subscribers")
			return
		}
		if r.PathValue("topic") == "busy" {
			httpapi.WriteUnavailable(w, "unavailable", "the ring could not take the message", 2e9)
			return
		}
		httpapi.WriteJSON(w, 200, map[string]any{"topic": r.PathValue("topic"),
			"accepted_by": "ab00000000000000000000000000000000000000", "addrs": []string{"/ip4/127.0.0.1/tcp/4001/p2p/x"}})
	})
	mux.HandleFunc("GET /v1/topics/{topic}/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: subscribed\ndata: {\"topic\":\"news\",\"node\":\"cd00000000000000000000000000000000000000\"}\n\n")
		fmt.Fprint(w, ": ping\n\n")
		fmt.Fprint(w, "event: message\ndata: {\"topic\":\"news\",\"seq\":1,\"data\":\"hello\",\"publisher\":\"ab00000000000000000000000000000000000000\",\"gap\":0}\n\n")
		fmt.Fprint(w, "event: dropped\ndata: {\"dropped\":3}\n\n")
		fmt.Fprint(w, "event: message\ndata: {\"topic\":\"news\",\"seq\":5,\"data_base64\":\"/wA=\",\"publisher\":\"ab00000000000000000000000000000000000000\",\"gap\":3}\n\n")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &got
}

func TestPubAnycastSubAgainstAPI(t *testing.T) {
	srv, got := fakeNode(t)
	api := srv.Listener.Addr().String()
	runOK := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("shoal %q: exit %d: %s", args, code, errb.String())
		}
		return out.String() + errb.String()
	}
	if out := runOK("pub", "a/b c", "hello there", "--api", api); !strings.Contains(out, `to "a/b c" as message #7`) {
		t.Errorf("pub: %q", out)
	}
	stdin = strings.NewReader("from stdin")
	defer func() { stdin = nil }()
	runOK("pub", "--api", api, "news", "-")
	if want := []string{"a/b c=hello there", "news=from stdin"}; fmt.Sprint(*got) != fmt.Sprint(want) {
		t.Errorf("server got %q, want %q", *got, want)
	}
	if out := runOK("anycast", "jobs", "work", "--api", api); !strings.Contains(out, "accepted by node ab00000000000000000000000000000000000000 (/ip4/127.0.0.1/tcp/4001/p2p/x)") {
		t.Errorf("anycast: %q", out)
	}
	out := runOK("sub", "news", "--api", api, "--count", "2")
	for _, want := range []string{"subscribed to \"news\" through node cd000000", "#1 from ab000000: hello", "dropped 3 message(s)", "#5 from ab000000: (binary, base64) /wA=   (3 earlier message(s) missed"} {
		if !strings.Contains(out, want) {
			t.Errorf("sub output lacks %q:\n%s", want, out)
		}
	}

	fails := []struct {
		args []string
		want string
	}{
		{[]string{"anycast", "empty", "x", "--api", api}, "no subscribers (no_subscribers, HTTP 404)"},
		{[]string{"anycast", "busy", "x", "--api", api}, "retrying in 2s"},
		{[]string{"sub", "news", "--api", api}, "ended the event stream"},
		{[]string{"pub", "news", "x", "--api", "127.0.0.1:1"}, "cannot reach the node's HTTP API at 127.0.0.1:1"},
		{[]string{"sub", "news", "--api", "127.0.0.1:1"}, "cannot reach"},
	}
	for _, f := range fails {
		var out, errb bytes.Buffer
		if code := run(f.args, &out, &errb); code != 1 || !strings.Contains(errb.String(), f.want) {
			t.Errorf("shoal %q: exit %d, stderr %q; want exit 1 and %q", f.args, code, errb.String(), f.want)
		}
	}
}

func TestReadEvents(t *testing.T) {
	in := "event: a\ndata: 1\ndata: 2\n\n: comment\n\ndata: x\n\nevent: b\n"
	var got []string
	err := readEvents(strings.NewReader(in), func(ev string, data []byte) error {
		got = append(got, ev+"="+string(data))
		return nil
	})
	if err != nil || fmt.Sprint(got) != "[a=1\n2 message=x]" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestPubSubCommandsListed(t *testing.T) {
	var out, errb bytes.Buffer
	run(nil, &out, &errb)
	for _, cmd := range []string{"pub ", "sub ", "anycast "} {
		if !strings.Contains(out.String(), "  "+cmd) {
			t.Errorf("usage does not list %q:\n%s", cmd, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"bench", "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "pubsub") {
		t.Errorf("bench --help: exit %d, does not list pubsub:\n%s", code, out.String())
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "pubsub", "--nodes", "1"}, "Nodes must be in [2, 200]"},
		{[]string{"bench", "pubsub", "--messages", "0"}, "--messages must be >= 1"},
		{[]string{"bench", "pubsub", "--payload", "4"}, "Payload must be in [9,"},
		{[]string{"bench", "pubsub", "x"}, `unexpected argument "x"`},
	} {
		errb.Reset()
		if code := run(c.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("shoal %q: exit %d, stderr %q; want 2 and %q", c.args, code, errb.String(), c.want)
		}
	}
}
