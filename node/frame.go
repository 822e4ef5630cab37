package node

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frames on the wire start with a channel byte. Ring protocol frames begin
// with ring.WireVersion (1); application frames sent straight to a node
// begin with chanDirect. Inside both, an application payload is:
//
//	byte    kind (one-way, request, response, error)
//	uvarint request ID (0 for one-way)
//	varint  deadline, Unix milliseconds (0 for none)
//	rest    the application's bytes
const chanDirect = 0xA1

const (
	kindOneWay    = 1 // raw application message
	kindRequest   = 2 // raw application request
	kindResponse  = 3 // answer to a request (raw bytes or a service Reply)
	kindError     = 4 // node-level failure of a request
	kindSvcOneWay = 5 // one-way service envelope
	kindSvcCall   = 6 // service envelope expecting a Reply
	kindProto     = 7 // a registered protocol's message: name length, name, data
)

var errBadApp = errors.New("node: bad application frame")

type appFrame struct {
	kind     byte
	reqID    uint64
	deadline int64
	data     []byte
}

// direct is the frame on the direct channel: chanDirect, then f, in a
// buffer of exactly its size.
func (f appFrame) direct() []byte {
	b := make([]byte, 1, 1+1+2*binary.MaxVarintLen64+len(f.data))
	b[0] = chanDirect
	return f.append(b)
}

func (f appFrame) append(dst []byte) []byte {
	dst = append(dst, f.kind)
	dst = binary.AppendUvarint(dst, f.reqID)
	dst = binary.AppendVarint(dst, f.deadline)
	return append(dst, f.data...)
}

func parseApp(b []byte) (appFrame, error) {
	var f appFrame
	if len(b) < 1 {
		return f, fmt.Errorf("%w: empty", errBadApp)
	}
	f.kind = b[0]
	if f.kind < kindOneWay || f.kind > kindProto {
		return f, fmt.Errorf("%w: unknown kind %d", errBadApp, f.kind)
	}
	b = b[1:]
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return f, fmt.Errorf("%w: bad request ID", errBadApp)
	}
	f.reqID = v
	b = b[n:]
	d, n := binary.Varint(b)
	if n <= 0 {
		return f, fmt.Errorf("%w: bad deadline", errBadApp)
	}
	f.deadline = d
	f.data = b[n:]
	if (f.kind == kindOneWay || f.kind == kindSvcOneWay || f.kind == kindProto) != (f.reqID == 0) {
		return f, fmt.Errorf("%w: kind %d with request ID %d", errBadApp, f.kind, f.reqID)
	}
	return f, nil
}
