package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// EncodeEnvelope serializes e (setting V to Version if zero).
func EncodeEnvelope(e Envelope) ([]byte, error) {
	if e.V == 0 {
		e.V = Version
	}
	return json.Marshal(e)
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
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&e); err != nil {
		id := peekID(b)
		e = Envelope{ID: id}
		return e, &Error{Code: CodeBadRequest, Message: "malformed envelope: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF { // dec.More() misses a trailing '}' or ']'
		return e, &Error{Code: CodeBadRequest, Message: "malformed envelope: more than one JSON value"}
	}
	switch {
	case e.V < 1:
		return e, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("envelope version %d: missing or invalid \"v\"", e.V)}
	case e.V > Version:
		return e, &Error{Code: CodeUnsupportedVersion, Message: fmt.Sprintf("envelope version %d is newer than this node's %d; upgrade this node or send version %d", e.V, Version, Version)}
	case e.Service == "" || len(e.Service) > MaxNameLen:
		return e, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("service name must be 1 to %d bytes, got %d", MaxNameLen, len(e.Service))}
	case e.Method == "" || len(e.Method) > MaxNameLen:
		return e, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("method name must be 1 to %d bytes, got %d", MaxNameLen, len(e.Method))}
	case e.ID == "" && !e.OneWay:
		return e, &Error{Code: CodeBadRequest, Message: "request ID \"id\" is required"}
	case len(e.ID) > MaxIDLen:
		return e, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("request ID of %d bytes exceeds %d", len(e.ID), MaxIDLen)}
	case e.Deadline < 0:
		return e, &Error{Code: CodeBadRequest, Message: "deadline must be Unix milliseconds >= 0"}
	}
	return e, nil
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

// EncodeReply serializes r (setting V if zero).
func EncodeReply(r Reply) ([]byte, error) {
	if r.V == 0 {
		r.V = Version
	}
	return json.Marshal(r)
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
