package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Version is the envelope format this node speaks. An envelope with a higher
// major version is refused with CodeUnsupportedVersion; fields added within
// a version are ignored by nodes that do not know them.
const Version = 1

// Limits on envelope fields.
const (
	MaxNameLen = 128 // service and method names
	MaxIDLen   = 128 // request IDs
)

// Envelope is a request between services, as JSON:
//
//	{"v":1,"svc":"inventory","m":"reserve","id":"…","dl":1767225600000,"p":{…}}
type Envelope struct {
	V        int             `json:"v"`
	Service  string          `json:"svc"`
	Method   string          `json:"m"`
	ID       string          `json:"id"`           // request ID: retries of one request reuse it
	Deadline int64           `json:"dl,omitempty"` // Unix milliseconds; 0 = none
	OneWay   bool            `json:"ow,omitempty"` // no answer expected
	Payload  json.RawMessage `json:"p,omitempty"`
}

// Reply answers an Envelope:
//
//	{"v":1,"id":"…","p":{…}}  or  {"v":1,"id":"…","err":{"code":"unknown_method","msg":"…"}}
type Reply struct {
	V       int             `json:"v"`
	ID      string          `json:"id"`
	Payload json.RawMessage `json:"p,omitempty"`
	Err     *Error          `json:"err,omitempty"`
}

// DeadlineTime is the envelope's deadline, or the zero time.
func (e *Envelope) DeadlineTime() time.Time {
	if e.Deadline == 0 {
		return time.Time{}
	}
	return time.UnixMilli(e.Deadline)
}

// EncodeEnvelope serializes e (setting V to Version if zero). The payload
// must be valid JSON; it is copied as it is, where json.Marshal compacted
// it and escaped <, > and & (a payload json.Marshal wrote needs neither).
//
// The envelope is written by hand, not by encoding/json: the fields are
// few and fixed, and re-scanning and copying the payload made up most of
// the framing's cost. For a payload json.Marshal wrote, the bytes are the
// same as json.Marshal's of the whole envelope (TestEncodeMatchesJSON).
func EncodeEnvelope(e Envelope) ([]byte, error) {
	if e.V == 0 {
		e.V = Version
	}
	if len(e.Payload) > 0 && !json.Valid(e.Payload) {
		return nil, fmt.Errorf("%w: payload is not valid JSON", ErrBadEnvelope)
	}
	b := make([]byte, 0, 64+len(e.Service)+len(e.Method)+len(e.ID)+len(e.Payload))
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(e.V), 10)
	b = append(b, `,"svc":`...)
	b = appendString(b, e.Service)
	b = append(b, `,"m":`...)
	b = appendString(b, e.Method)
	b = append(b, `,"id":`...)
	b = appendString(b, e.ID)
	if e.Deadline != 0 {
		b = append(b, `,"dl":`...)
		b = strconv.AppendInt(b, e.Deadline, 10)
	}
	if e.OneWay {
		b = append(b, `,"ow":true`...)
	}
	if len(e.Payload) > 0 {
		b = append(b, `,"p":`...)
		b = append(b, e.Payload...)
	}
	return append(b, '}'), nil
}

// appendString appends s as a JSON string, as json.Marshal would write it.
// Names and request IDs are plain ASCII; anything else is left to
// encoding/json (escapes, HTML-safe characters, invalid UTF-8).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// ErrBadEnvelope wraps every decoding failure.
var ErrBadEnvelope = errors.New("service: bad envelope")

// DecodeEnvelope parses and checks an envelope of at most maxBytes. Unknown
// fields are ignored. The error, if any, is an *Error ready to send back:
// CodeTooLarge, CodeBadRequest or CodeUnsupportedVersion. The envelope's ID
// is filled in whenever it could be read, so the error can be addressed.
func DecodeEnvelope(b []byte, maxBytes int) (Envelope, *Error) {
	var e Envelope
	if len(b) > maxBytes {
		e.ID = peekID(b)
		return e, &Error{Code: CodeTooLarge, Message: fmt.Sprintf("request of %d bytes exceeds the limit of %d", len(b), maxBytes)}
	}
	if json.Unmarshal(b, &e) != nil {
		// Malformed: decode again the slow way, which tells a trailing
		// second value apart and keeps what was read for the error.
		return decodeBad(b)
	}
	return e, checkEnvelope(e)
}

// decodeBad explains why a frame that json.Unmarshal refused is not an
// envelope.
func decodeBad(b []byte) (Envelope, *Error) {
	var e Envelope
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&e); err != nil {
		id := peekID(b)
		e = Envelope{ID: id}
		return e, &Error{Code: CodeBadRequest, Message: "malformed envelope: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF { // dec.More() misses a trailing '}' or ']'
		return e, &Error{Code: CodeBadRequest, Message: "malformed envelope: more than one JSON value"}
	}
	// Not reached for frames json.Unmarshal refused, unless the two
	// decoders disagree: say so rather than pass the frame.
	return e, &Error{Code: CodeBadRequest, Message: "malformed envelope"}
}

// checkEnvelope checks a decoded envelope's fields.
func checkEnvelope(e Envelope) *Error {
	switch {
	case e.V < 1:
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("envelope version %d: missing or invalid \"v\"", e.V)}
	case e.V > Version:
		return &Error{Code: CodeUnsupportedVersion, Message: fmt.Sprintf("envelope version %d is newer than this node's %d; upgrade this node or send version %d", e.V, Version, Version)}
	case e.Service == "" || len(e.Service) > MaxNameLen:
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("service name must be 1 to %d bytes, got %d", MaxNameLen, len(e.Service))}
	case e.Method == "" || len(e.Method) > MaxNameLen:
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("method name must be 1 to %d bytes, got %d", MaxNameLen, len(e.Method))}
	case e.ID == "" && !e.OneWay:
		return &Error{Code: CodeBadRequest, Message: "request ID \"id\" is required"}
	case len(e.ID) > MaxIDLen:
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("request ID of %d bytes exceeds %d", len(e.ID), MaxIDLen)}
	case e.Deadline < 0:
		return &Error{Code: CodeBadRequest, Message: "deadline must be Unix milliseconds >= 0"}
	}
	return nil
}

// peekID tries to read just the request ID from a frame that failed to
// decode, so the error reply can name it.
func peekID(b []byte) string {
	var p struct {
		ID string `json:"id"`
	}
	if len(b) > 1<<16 {
		b = b[:1<<16]
	}
	if json.Unmarshal(b, &p) == nil && len(p.ID) <= MaxIDLen {
		return p.ID
	}
	return ""
}

// EncodeReply serializes r (setting V if zero), written by hand like
// EncodeEnvelope; the payload must be valid JSON.
func EncodeReply(r Reply) ([]byte, error) {
	if r.V == 0 {
		r.V = Version
	}
	if len(r.Payload) > 0 && !json.Valid(r.Payload) {
		return nil, fmt.Errorf("%w: reply payload is not valid JSON", ErrBadEnvelope)
	}
	b := make([]byte, 0, 32+len(r.ID)+len(r.Payload))
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(r.V), 10)
	b = append(b, `,"id":`...)
	b = appendString(b, r.ID)
	if len(r.Payload) > 0 {
		b = append(b, `,"p":`...)
		b = append(b, r.Payload...)
	}
	if r.Err != nil {
		e, err := json.Marshal(r.Err)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"err":`...)
		b = append(b, e...)
	}
	return append(b, '}'), nil
}

// DecodeReply parses a reply; unknown fields are ignored.
func DecodeReply(b []byte) (Reply, error) {
	var r Reply
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%w: reply: %v", ErrBadEnvelope, err)
	}
	if r.V < 1 {
		return r, fmt.Errorf("%w: reply without version", ErrBadEnvelope)
	}
	return r, nil
}
