package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeEnvelope feeds the decoder valid and invalid envelopes. It must
// never panic; a refusal is a well-formed *Error; an accepted envelope is
// one valid JSON value that survives a re-encode and decode unchanged (the
// payload compared as JSON), and the second encoding is a fixed point. It
// also checks DecodeEnvelope against the json.Decoder version it replaced.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"svc":"inventory","m":"reserve","id":"r-1","dl":1767225600000,"p":{"sku":"sku-42","n":3}}`,
		`{"v":1,"svc":"s","m":"m","ow":true}`,
		`{"v":1,"svc":"s","m":"m","id":"a","trace":{"x":[1,2,{"y":null}]},"p":[1, 2 ,3]}`,
		`{"v":2,"svc":"s","m":"m","id":"a"}`,
		`{"v":1,"svc":5,"m":"m","id":"a"}`,
		`{"v":1,"svc":"s","m":"m","id":"a"}{"v":1}`,
		`{"v":1,"svc":"s","m":"m","id":"a"}}`,
		`{"v":1,"svc":"s","SVC":"t","M":"m","ID":"a"}`,
		`{"v":1,"svc":"s","m":"m","id":"a","dl":9223372036854775807}`,
		`{"v":1,"svc":"s","m":"m","id":"a","dl":9223372036854775808}`,
		`{"v":1,"svc":"s","m":"m","id":"a","p":"<&>\u2028\ud800"}`,
		`{"v":1,"svc":"s\u0000","m":"m","id":"\xff\xfe"}`,
		`{"v":1,"svc":"s","m":"m","id":"a","p":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`,
		`{"v":1,"svc":"s","m":"m","id":"a","p":1e999}`,
		`{"v":1,"svc":"s","m":"m","id":"a","p":null}`,
		"{\"v\":1,\"svc\":\"s\xff\",\"m\":\"m\xc3\",\"id\":\"a\",\"p\":\"\xed\xa0\x80\"}",
		`null`, `[]`, `""`, `{`, ``, "\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 4096
		e, bad := DecodeEnvelope(b, max)
		if re, rbad := decodeReference(b, max); (bad == nil) != (rbad == nil) || (bad != nil && *bad != *rbad) || !sameEnvelope(e, re) {
			t.Fatalf("DecodeEnvelope(%q) = %+v, %v; the encoding/json Decoder it replaced gives %+v, %v", b, e, bad, re, rbad)
		}
		if bad != nil {
			switch bad.Code {
			case CodeBadRequest, CodeTooLarge, CodeUnsupportedVersion:
			default:
				t.Fatalf("refusal with code %q: %v", bad.Code, bad)
			}
			if bad.Message == "" {
				t.Fatalf("refusal %q without a message", bad.Code)
			}
			if _, err := EncodeReply(Reply{ID: e.ID, Err: bad}); err != nil {
				t.Fatalf("refusal cannot be sent back: %v", err)
			}
			return
		}
		if len(b) > max {
			t.Fatalf("accepted %d bytes over the limit of %d", len(b), max)
		}
		if !json.Valid(b) { // found `{…}}` and `{…}]` accepted (dec.More)
			t.Fatalf("accepted %q, which is not one JSON value", b)
		}
		if e.V < 1 || e.V > Version || e.Service == "" || e.Method == "" || (e.ID == "" && !e.OneWay) ||
			len(e.Service) > MaxNameLen || len(e.Method) > MaxNameLen || len(e.ID) > MaxIDLen || e.Deadline < 0 {
			t.Fatalf("accepted an envelope that breaks the rules: %+v", e)
		}
		b1, err := EncodeEnvelope(e)
		if err != nil {
			t.Fatalf("accepted %q but cannot re-encode it: %v", b, err)
		}
		e2, bad := DecodeEnvelope(b1, len(b1))
		if bad != nil {
			t.Fatalf("re-encoding %s of accepted %q refused: %v", b1, b, bad)
		}
		if e.V != e2.V || e.Service != e2.Service || e.Method != e2.Method || e.ID != e2.ID ||
			e.Deadline != e2.Deadline || e.OneWay != e2.OneWay {
			t.Fatalf("round trip changed the envelope:\n in  %+v\n out %+v", e, e2)
		}
		if !sameJSON(t, e.Payload, e2.Payload) {
			t.Fatalf("round trip changed the payload: %q -> %q", e.Payload, e2.Payload)
		}
		b2, err := EncodeEnvelope(e2)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("encoding is not a fixed point:\n %s\n %s (%v)", b1, b2, err)
		}
	})
}

// sameJSON reports whether two raw JSON values (or two absent ones) mean
// the same, numbers compared as written.
func sameJSON(t *testing.T, a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	va, vb := decodeAny(t, a), decodeAny(t, b)
	return reflect.DeepEqual(va, vb)
}

func decodeAny(t *testing.T, b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("payload %q is not JSON: %v", b, err)
	}
	return v
}

// decodeReference is DecodeEnvelope as it was before its fast path: one
// json.Decoder pass, then a check for anything after the value.
func decodeReference(b []byte, maxBytes int) (Envelope, *Error) {
	var e Envelope
	if len(b) > maxBytes {
		e.ID = peekID(b)
		return e, &Error{Code: CodeTooLarge, Message: fmt.Sprintf("request of %d bytes exceeds the limit of %d", len(b), maxBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&e); err != nil {
		return Envelope{ID: peekID(b)}, &Error{Code: CodeBadRequest, Message: "malformed envelope: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return e, &Error{Code: CodeBadRequest, Message: "malformed envelope: more than one JSON value"}
	}
	return e, checkEnvelope(e)
}
