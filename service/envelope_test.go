package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestDecodeEnvelopeValid(t *testing.T) {
	in := `{"v":1,"svc":"inventory","m":"reserve","id":"r-1","dl":1767225600000,"p":{"sku":"sku-42","n":3}}`
	e, bad := DecodeEnvelope([]byte(in), 1<<20)
	if bad != nil {
		t.Fatalf("DecodeEnvelope: %v", bad)
	}
	want := Envelope{V: 1, Service: "inventory", Method: "reserve", ID: "r-1", Deadline: 1767225600000,
		Payload: json.RawMessage(`{"sku":"sku-42","n":3}`)}
	if !sameEnvelope(e, want) {
		t.Fatalf("got %+v\nwant %+v", e, want)
	}
	if got := e.DeadlineTime(); !got.Equal(time.UnixMilli(1767225600000)) {
		t.Fatalf("DeadlineTime = %v", got)
	}
	if !(&Envelope{}).DeadlineTime().IsZero() {
		t.Fatal("no deadline should give the zero time")
	}
}

func TestEncodeEnvelopeRoundTrip(t *testing.T) {
	e := Envelope{Service: "s", Method: "m", ID: "x", Deadline: 5, OneWay: true, Payload: json.RawMessage(`[1,2]`)}
	b, err := EncodeEnvelope(e)
	if err != nil {
		t.Fatal(err)
	}
	got, bad := DecodeEnvelope(b, 1<<20)
	if bad != nil {
		t.Fatal(bad)
	}
	e.V = Version // EncodeEnvelope fills it in
	if !sameEnvelope(got, e) {
		t.Fatalf("got %+v, want %+v", got, e)
	}
}

// TestDecodeEnvelopeBad is the table of inputs a peer might send: each is
// refused with the right code, a message that says what is wrong, and the
// request ID whenever it could be read.
func TestDecodeEnvelopeBad(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen+1)
	longID := strings.Repeat("i", MaxIDLen+1)
	tests := []struct {
		name   string
		in     string
		max    int
		code   string
		id     string // ID recovered for the error reply
		msgHas string
	}{
		{"missing v", `{"svc":"s","m":"m","id":"a"}`, 0, CodeBadRequest, "a", `missing or invalid "v"`},
		{"v zero", `{"v":0,"svc":"s","m":"m","id":"a"}`, 0, CodeBadRequest, "a", `"v"`},
		{"v negative", `{"v":-1,"svc":"s","m":"m","id":"a"}`, 0, CodeBadRequest, "a", `"v"`},
		{"v 2", `{"v":2,"svc":"s","m":"m","id":"a"}`, 0, CodeUnsupportedVersion, "a", "newer than this node's 1"},
		{"v huge", `{"v":99999,"svc":"s","m":"m","id":"a"}`, 0, CodeUnsupportedVersion, "a", "99999"},
		{"v not an integer", `{"v":1.5,"svc":"s","m":"m","id":"a"}`, 0, CodeBadRequest, "a", "malformed envelope"},
		{"v over int64", `{"v":1e40,"svc":"s","m":"m","id":"a"}`, 0, CodeBadRequest, "a", "malformed envelope"},
		{"malformed, id readable", `{"v":1,"svc":5,"m":"m","id":"abc"}`, 0, CodeBadRequest, "abc", "svc"},
		{"method wrong type", `{"v":1,"svc":"s","m":["m"],"id":"abc"}`, 0, CodeBadRequest, "abc", "malformed envelope"},
		{"deadline wrong type", `{"v":1,"svc":"s","m":"m","id":"abc","dl":"soon"}`, 0, CodeBadRequest, "abc", "dl"},
		{"one-way wrong type", `{"v":1,"svc":"s","m":"m","id":"abc","ow":"yes"}`, 0, CodeBadRequest, "abc", "ow"},
		{"id wrong type", `{"v":1,"svc":"s","m":"m","id":7}`, 0, CodeBadRequest, "", "id"},
		{"truncated", `{"v":1,"svc":"s","m":"m","id":"abc"`, 0, CodeBadRequest, "", "malformed envelope"},
		{"not JSON", `hello`, 0, CodeBadRequest, "", "malformed envelope"},
		{"empty", ``, 0, CodeBadRequest, "", "malformed envelope"},
		{"null", `null`, 0, CodeBadRequest, "", `"v"`},
		{"array", `[1,2,3]`, 0, CodeBadRequest, "", "malformed envelope"},
		{"string", `"v"`, 0, CodeBadRequest, "", "malformed envelope"},
		{"two values", `{"v":1,"svc":"s","m":"m","id":"a"}{"v":1,"svc":"s","m":"m","id":"b"}`, 0, CodeBadRequest, "a", "JSON value"},
		{"two values, space", `{"v":1,"svc":"s","m":"m","id":"a"} 7`, 0, CodeBadRequest, "a", "JSON value"},
		{"trailing brace", `{"v":1,"svc":"s","m":"m","id":"a"}}`, 0, CodeBadRequest, "a", "JSON value"},
		{"trailing bracket", `{"v":1,"svc":"s","m":"m","id":"a"}]`, 0, CodeBadRequest, "a", "JSON value"},
		{"no service", `{"v":1,"m":"m","id":"a"}`, 0, CodeBadRequest, "a", "service name must be 1 to 128 bytes, got 0"},
		{"service too long", `{"v":1,"svc":"` + long + `","m":"m","id":"a"}`, 0, CodeBadRequest, "a", "got 129"},
		{"no method", `{"v":1,"svc":"s","id":"a"}`, 0, CodeBadRequest, "a", "method name"},
		{"method too long", `{"v":1,"svc":"s","m":"` + long + `","id":"a"}`, 0, CodeBadRequest, "a", "method name"},
		{"no id", `{"v":1,"svc":"s","m":"m"}`, 0, CodeBadRequest, "", `request ID "id" is required`},
		{"id too long", `{"v":1,"svc":"s","m":"m","id":"` + longID + `"}`, 0, CodeBadRequest, longID, "request ID of 129 bytes"},
		{"negative deadline", `{"v":1,"svc":"s","m":"m","id":"a","dl":-5}`, 0, CodeBadRequest, "a", "deadline"},
		{"too large", `{"v":1,"svc":"s","m":"m","id":"big","p":"` + strings.Repeat("x", 100) + `"}`, 64, CodeTooLarge, "big", "exceeds the limit of 64"},
		{"too large and malformed", `{"v":1,"svc":"s","id":"big","p":"` + strings.Repeat("x", 100), 64, CodeTooLarge, "", "exceeds the limit of 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := tt.max
			if max == 0 {
				max = 1 << 20
			}
			e, bad := DecodeEnvelope([]byte(tt.in), max)
			if bad == nil {
				t.Fatalf("accepted %q as %+v", tt.in, e)
			}
			if bad.Code != tt.code {
				t.Errorf("code = %q, want %q (%v)", bad.Code, tt.code, bad)
			}
			if e.ID != tt.id {
				t.Errorf("recovered ID %q, want %q", e.ID, tt.id)
			}
			if !strings.Contains(bad.Message, tt.msgHas) {
				t.Errorf("message %q does not say %q", bad.Message, tt.msgHas)
			}
		})
	}
}

func TestDecodeEnvelopeTolerates(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Envelope
	}{
		{"unknown fields ignored",
			`{"v":1,"svc":"s","m":"m","id":"a","trace":{"span":"x","hops":[1,2]},"prio":9,"zz":null}`,
			Envelope{V: 1, Service: "s", Method: "m", ID: "a"}},
		{"fields in any order, whitespace",
			" \n{ \"p\" : [ 1 ] , \"id\":\"a\",\"m\":\"m\",\"svc\":\"s\",\"v\":1 }\n\t",
			Envelope{V: 1, Service: "s", Method: "m", ID: "a", Payload: json.RawMessage(`[ 1 ]`)}},
		{"one-way without id", `{"v":1,"svc":"s","m":"m","ow":true}`,
			Envelope{V: 1, Service: "s", Method: "m", OneWay: true}},
		{"limits are inclusive",
			`{"v":1,"svc":"` + strings.Repeat("s", MaxNameLen) + `","m":"` + strings.Repeat("m", MaxNameLen) + `","id":"` + strings.Repeat("i", MaxIDLen) + `"}`,
			Envelope{V: 1, Service: strings.Repeat("s", MaxNameLen), Method: strings.Repeat("m", MaxNameLen), ID: strings.Repeat("i", MaxIDLen)}},
		{"null payload kept", `{"v":1,"svc":"s","m":"m","id":"a","p":null}`,
			Envelope{V: 1, Service: "s", Method: "m", ID: "a", Payload: json.RawMessage(`null`)}},
		{"duplicate key: last wins (encoding/json)", `{"v":1,"svc":"s","svc":"t","m":"m","id":"a"}`,
			Envelope{V: 1, Service: "t", Method: "m", ID: "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, bad := DecodeEnvelope([]byte(tt.in), 1<<20)
			if bad != nil {
				t.Fatalf("refused: %v", bad)
			}
			if !sameEnvelope(e, tt.want) {
				t.Fatalf("got %+v, want %+v", e, tt.want)
			}
		})
	}
}

func TestDecodeEnvelopeSizeLimitIsInclusive(t *testing.T) {
	b, _ := EncodeEnvelope(Envelope{Service: "s", Method: "m", ID: "a", Payload: json.RawMessage(`"` + strings.Repeat("x", 500) + `"`)})
	if _, bad := DecodeEnvelope(b, len(b)); bad != nil {
		t.Fatalf("exactly at the limit: %v", bad)
	}
	if _, bad := DecodeEnvelope(b, len(b)-1); bad == nil || bad.Code != CodeTooLarge {
		t.Fatalf("one byte over: %v", bad)
	}
}

func TestReplyRoundTrip(t *testing.T) {
	for _, r := range []Reply{
		{ID: "a", Payload: json.RawMessage(`{"ok":true}`)},
		{ID: "b", Err: Overloaded("disk", 20*time.Millisecond)},
		{ID: "c", Err: &Error{Code: CodeUnknownMethod, Message: "no"}},
	} {
		b, err := EncodeReply(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeReply(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.V != Version || got.ID != r.ID || string(got.Payload) != string(r.Payload) || fmt.Sprint(got.Err) != fmt.Sprint(r.Err) {
			t.Fatalf("round trip of %+v gave %+v", r, got)
		}
	}
	// Newer replies with fields this node does not know still decode.
	got, err := DecodeReply([]byte(`{"v":1,"id":"x","p":1,"served_by":"n7","err":{"code":"overloaded","msg":"m","retry_after_ms":30,"resource":"disk","extra":1}}`))
	if err != nil || got.Err.RetryAfter() != 30*time.Millisecond || got.Err.Resource != "disk" {
		t.Fatalf("reply with unknown fields: %+v, %v", got, err)
	}
	for _, in := range []string{`{"id":"x"}`, `{"v":1`, `{"v":"1"}`, ``} {
		if _, err := DecodeReply([]byte(in)); !errors.Is(err, ErrBadEnvelope) {
			t.Errorf("DecodeReply(%q) = %v, want ErrBadEnvelope", in, err)
		}
	}
}

func TestErrors(t *testing.T) {
	e := Overloaded("disk", 1500*time.Microsecond)
	if !errors.Is(e, ErrOverloaded) || errors.Is(e, &Error{Code: CodeApp}) {
		t.Fatal("errors.Is against sentinels")
	}
	if e.RetryAfterMs != 1 || e.RetryAfter() != time.Millisecond {
		t.Fatalf("retry-after = %d ms", e.RetryAfterMs)
	}
	if Overloaded("cpu", 0).RetryAfterMs != 1 {
		t.Fatal("retry-after must be at least 1 ms")
	}
	if s := e.Error(); !strings.Contains(s, "overloaded (disk)") || !strings.Contains(s, `"disk"`) {
		t.Fatalf("Error() = %q", s)
	}
	wrapped := fmt.Errorf("calling: %w", e)
	if !errors.Is(wrapped, ErrOverloaded) || !Retryable(wrapped) {
		t.Fatal("a wrapped overload is still an overload and retryable")
	}
	app := AppError("no stock for %s", "sku-1")
	if !errors.Is(app, ErrApp) || Retryable(app) || app.Error() != "service: app: no stock for sku-1" {
		t.Fatalf("AppError: %v", app)
	}
	for _, s := range []*Error{ErrUnknownService, ErrUnknownMethod, ErrUnsupportedVersion, ErrBadRequest, ErrTooLarge, ErrDeadlineExceeded, ErrInternal} {
		if Retryable(&Error{Code: s.Code, Message: "x"}) {
			t.Errorf("%s must not be retried", s.Code)
		}
	}
	if !Retryable(errors.New("timeout")) {
		t.Error("transport-level errors are retryable")
	}
	// A sentinel does not match an error with a different code, and an
	// error with a message is not itself a sentinel.
	if errors.Is(&Error{Code: CodeApp}, ErrInternal) || errors.Is(ErrInternal, &Error{Code: CodeInternal, Message: "x"}) {
		t.Fatal("Is is too loose")
	}
	if toError(errors.New("boom")).Code != CodeApp || toError(fmt.Errorf("w: %w", ErrTooLarge)).Code != CodeTooLarge {
		t.Fatal("toError")
	}
}

// sameEnvelope compares envelopes, payloads as bytes.
func sameEnvelope(a, b Envelope) bool {
	return a.V == b.V && a.Service == b.Service && a.Method == b.Method && a.ID == b.ID &&
		a.Deadline == b.Deadline && a.OneWay == b.OneWay && string(a.Payload) == string(b.Payload)
}

// BenchmarkEnvelope: one request envelope encoded and decoded, then its
// reply, around a 0.5 KB payload (a kv accept's size): the framing every
// service call pays on top of its own payload's JSON. encoding-json is the
// way it was done before (json.Marshal, a json.Decoder), the baseline for
// the hand-written framing in the same run:
//
//	go test -run '^$' -bench Envelope -benchmem ./service
func BenchmarkEnvelope(b *testing.B) {
	payload := json.RawMessage(`{"key":"bench-000123","ballot":{"r":7,"n":"` + strings.Repeat("a", 40) + `"},"state":{"ver":12,"val":"` +
		strings.Repeat("eHh4", 34) + `","recent":[{"q":"0123456789abcdef","v":11},{"q":"fedcba9876543210","v":12}],"cfg":[{"id":"` +
		strings.Repeat("a", 40) + `"},{"id":"` + strings.Repeat("b", 40) + `"},{"id":"` + strings.Repeat("c", 40) + `"}],"prev_same":true}}`)
	reply := json.RawMessage(`{"eligible":true,"ok":true,"promised":{"r":7,"n":"` + strings.Repeat("a", 40) + `"},"accepted":{"r":0,"n":"` + strings.Repeat("0", 40) + `"},"state":{"ver":0}}`)
	req := Envelope{V: Version, Service: "kv", Method: "accept", ID: "0123456789abcdef0123", Deadline: 1767225600000, Payload: payload}
	for _, c := range []struct {
		name      string
		encode    func(Envelope) ([]byte, error)
		decode    func([]byte, int) (Envelope, *Error)
		encodeRep func(Reply) ([]byte, error)
	}{
		{"encoding-json", func(e Envelope) ([]byte, error) { return json.Marshal(e) }, decodeReference, func(r Reply) ([]byte, error) { return json.Marshal(r) }},
		{"shoal", EncodeEnvelope, DecodeEnvelope, EncodeReply},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(payload) + len(reply)))
			for b.Loop() {
				fr, err := c.encode(req)
				if err != nil {
					b.Fatal(err)
				}
				e, bad := c.decode(fr, 1<<20)
				if bad != nil || len(e.Payload) != len(payload) {
					b.Fatal(bad)
				}
				rb, err := c.encodeRep(Reply{V: Version, ID: e.ID, Payload: reply})
				if err != nil {
					b.Fatal(err)
				}
				r, err := DecodeReply(rb)
				if err != nil || len(r.Payload) != len(reply) {
					b.Fatal(err)
				}
			}
		})
	}
}

// EncodeEnvelope and EncodeReply write by hand what json.Marshal wrote
// before: the same bytes for any names, IDs (escapes, HTML characters,
// invalid UTF-8), deadlines, flags, errors and compact payloads.
func TestEncodeMatchesJSON(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		str := rapid.OneOf(rapid.StringMatching(`[a-z0-9._-]{0,20}`), rapid.String(), rapid.SampledFrom([]string{"", "a\"b", `a\b`, "<&>", "\x00\x1f", "\xff\xfe", "é\u2028"}))
		var payload json.RawMessage
		if rapid.Bool().Draw(t, "has payload") {
			v := map[string]any{"s": str.Draw(t, "p.s"), "n": rapid.Int64().Draw(t, "p.n"), "l": []any{rapid.Bool().Draw(t, "p.b"), nil}}
			payload, _ = json.Marshal(v)
		}
		e := Envelope{V: rapid.SampledFrom([]int{0, 1, 2}).Draw(t, "v"), Service: str.Draw(t, "svc"), Method: str.Draw(t, "m"), ID: str.Draw(t, "id"),
			Deadline: rapid.SampledFrom([]int64{0, 1, 1767225600000, -5}).Draw(t, "dl"), OneWay: rapid.Bool().Draw(t, "ow"), Payload: payload}
		got, err := EncodeEnvelope(e)
		if err != nil {
			t.Fatal(err)
		}
		if e.V == 0 {
			e.V = Version
		}
		want, _ := json.Marshal(e)
		if string(got) != string(want) {
			t.Fatalf("EncodeEnvelope:\n got %s\nwant %s", got, want)
		}
		r := Reply{V: e.V, ID: e.ID, Payload: payload}
		if rapid.Bool().Draw(t, "has error") {
			r.Err = &Error{Code: str.Draw(t, "code"), Message: str.Draw(t, "msg"), RetryAfterMs: rapid.Int64Range(0, 5000).Draw(t, "ra")}
		}
		got, err = EncodeReply(r)
		if err != nil {
			t.Fatal(err)
		}
		want, _ = json.Marshal(r)
		if string(got) != string(want) {
			t.Fatalf("EncodeReply:\n got %s\nwant %s", got, want)
		}
	})
}

// A payload that is not JSON is refused, not framed.
func TestEncodeRefusesBadPayload(t *testing.T) {
	for _, p := range []string{`{"a":`, `hello`, `{} {}`} {
		if _, err := EncodeEnvelope(Envelope{Service: "s", Method: "m", ID: "x", Payload: json.RawMessage(p)}); !errors.Is(err, ErrBadEnvelope) {
			t.Errorf("EncodeEnvelope with payload %q: err = %v, want ErrBadEnvelope", p, err)
		}
		if _, err := EncodeReply(Reply{ID: "x", Payload: json.RawMessage(p)}); !errors.Is(err, ErrBadEnvelope) {
			t.Errorf("EncodeReply with payload %q: err = %v, want ErrBadEnvelope", p, err)
		}
	}
}
