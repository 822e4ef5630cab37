package pubsub

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// Wire format of a pubsub message (the payload of node protocol "pubsub"):
//
//	byte    wireVersion
//	byte    kind
//	byte    flags
//	uvarint len(topic), topic bytes
//	uvarint seq, seq2, id, hops
//	kind kData:    20 bytes publisher ID
//	kind kAny:     20 bytes origin ID, uvarint count, count × (uvarint len, address)
//	kinds kLeave, kHB, kHBAck: uvarint count, count × (uvarint len, topic, uvarint seq, byte ok)
//	rest    data (kPub, kData, kAny: the message; kAnyDone: a reason)
//
// Every field is always present for its kind, so decoding never guesses.
// A message from a newer version is dropped (counted as bad).
const wireVersion = 1

// Message kinds.
const (
	kSub     = 1  // routed to the topic: join the tree (seq: last seq seen; flags fToRoot, fHandoff)
	kSubAck  = 2  // parent → child: you are my child
	kLeave   = 3  // child → parent: drop me for these topics
	kHB      = 4  // child → parent: I am alive, still your child for these topics
	kHBAck   = 5  // parent → child: per topic, whether I still have you (ok) and my last seq
	kPub     = 6  // routed to the topic's root: sequence and multicast this (id: publisher's ID for it)
	kPubAck  = 7  // root → publisher: accepted as seq
	kData    = 8  // parent → child: a sequenced message (id: its publish ID; 0 from older nodes)
	kResend  = 9  // child → parent: replay what you hold in (seq, seq2) (seq2 0: no upper bound)
	kAny     = 10 // routed to the topic, then sent along the tree: anycast search
	kAnyDone = 11 // to the anycast's origin: accepted (fOK) or failed (data: reason)
	maxKind  = kAnyDone
)

// Flags.
const (
	fToRoot  = 1 << 0 // kSub: do not intercept, deliver at the root (an orphan with children, a handoff)
	fHandoff = 1 << 1 // kSub: from a root that lost its range: continue from seq
	fOK      = 1 << 0 // kAnyDone: accepted
)

const (
	maxAddrs     = 64
	maxWireTopic = 1 << 16
)

var errBadMsg = errors.New("pubsub: bad message")

// entry is one topic in a batched message (leave, heartbeat, heartbeat ack).
type entry struct {
	topic string
	seq   uint64
	ok    bool
}

// msg is every message kind in one struct; fields a kind does not use are zero.
type msg struct {
	kind      byte
	flags     byte
	topic     string
	seq       uint64
	seq2      uint64
	id        uint64
	hops      uint64
	publisher id.ID          // kData
	origin    transport.Peer // kAny
	entries   []entry        // kLeave, kHB, kHBAck
	data      []byte         // kPub, kData, kAny; kAnyDone: reason

	// again (kData, not on the wire): this publish (publisher, id) reached
	// this node before under another seq; it is ordered but not delivered.
	again bool
}

func hasEntries(kind byte) bool { return kind == kLeave || kind == kHB || kind == kHBAck }

// encode appends m's wire form to dst.
func (m *msg) encode(dst []byte) []byte {
	dst = append(dst, wireVersion, m.kind, m.flags)
	dst = binary.AppendUvarint(dst, uint64(len(m.topic)))
	dst = append(dst, m.topic...)
	dst = binary.AppendUvarint(dst, m.seq)
	dst = binary.AppendUvarint(dst, m.seq2)
	dst = binary.AppendUvarint(dst, m.id)
	dst = binary.AppendUvarint(dst, m.hops)
	switch {
	case m.kind == kData:
		dst = append(dst, m.publisher[:]...)
	case m.kind == kAny:
		dst = append(dst, m.origin.ID[:]...)
		dst = binary.AppendUvarint(dst, uint64(len(m.origin.Addrs)))
		for _, a := range m.origin.Addrs {
			dst = binary.AppendUvarint(dst, uint64(len(a)))
			dst = append(dst, a...)
		}
	case hasEntries(m.kind):
		dst = binary.AppendUvarint(dst, uint64(len(m.entries)))
		for _, e := range m.entries {
			dst = binary.AppendUvarint(dst, uint64(len(e.topic)))
			dst = append(dst, e.topic...)
			dst = binary.AppendUvarint(dst, e.seq)
			ok := byte(0)
			if e.ok {
				ok = 1
			}
			dst = append(dst, ok)
		}
	}
	return append(dst, m.data...)
}

// bytes is encode into a fresh slice.
func (m *msg) bytes() []byte { return m.encode(make([]byte, 0, 48+len(m.topic)+len(m.data))) }

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errBadMsg, what)
	}
}

func (r *reader) byte(what string) byte {
	if r.err != nil || len(r.b) < 1 {
		r.fail(what)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str(what string, limit int) string {
	n := r.uvarint(what)
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) || n > uint64(limit) {
		r.fail(what + " length")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) id(what string) id.ID {
	var x id.ID
	if r.err != nil || len(r.b) < len(x) {
		r.fail(what)
		return x
	}
	copy(x[:], r.b)
	r.b = r.b[len(x):]
	return x
}

// decode parses one message. It never panics and never allocates more than
// the input's size suggests.
func decode(b []byte) (*msg, error) {
	r := &reader{b: b}
	if v := r.byte("version"); r.err == nil && v != wireVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", errBadMsg, v, wireVersion)
	}
	m := &msg{}
	m.kind = r.byte("kind")
	if r.err == nil && (m.kind < 1 || m.kind > maxKind) {
		return nil, fmt.Errorf("%w: unknown kind %d", errBadMsg, m.kind)
	}
	m.flags = r.byte("flags")
	m.topic = r.str("topic", maxWireTopic)
	m.seq = r.uvarint("seq")
	m.seq2 = r.uvarint("seq2")
	m.id = r.uvarint("id")
	m.hops = r.uvarint("hops")
	switch {
	case m.kind == kData:
		m.publisher = r.id("publisher")
	case m.kind == kAny:
		m.origin.ID = r.id("origin")
		n := r.uvarint("address count")
		if n > maxAddrs || n > uint64(len(r.b)) {
			r.fail("address count")
			break
		}
		for i := uint64(0); i < n && r.err == nil; i++ {
			m.origin.Addrs = append(m.origin.Addrs, r.str("address", 1024))
		}
	case hasEntries(m.kind):
		n := r.uvarint("entry count")
		if n > uint64(len(r.b))/3 { // an entry takes at least 3 bytes
			r.fail("entry count")
			break
		}
		if n > 0 {
			m.entries = make([]entry, 0, n)
		}
		for i := uint64(0); i < n && r.err == nil; i++ {
			e := entry{topic: r.str("entry topic", maxWireTopic)}
			e.seq = r.uvarint("entry seq")
			switch r.byte("entry ok") {
			case 0:
			case 1:
				e.ok = true
			default:
				r.fail("entry ok")
			}
			m.entries = append(m.entries, e)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) > 0 {
		m.data = r.b
	}
	return m, nil
}
