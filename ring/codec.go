package ring

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// WireVersion is the first byte of every ring frame.
const WireVersion = 1

// Limits on decoded content, so a peer cannot make a node allocate without bound.
const (
	maxHeader  = 256 << 10 // JSON header of one message
	maxMembers = 1024      // entries in one leaf set or table list
	maxAddrs   = 32        // addresses of one peer
)

// ErrDecode wraps every decoding failure.
var ErrDecode = errors.New("ring: bad message")

// Frame layout:
//
//	byte 0     WireVersion
//	byte 1     Kind
//	uvarint    length of the sender's Peer as JSON, then those bytes
//	uvarint    length of the message as JSON, then those bytes
//	rest       payload (Route only)
//
// JSON keeps the protocol readable and lets newer nodes add fields that older
// ones ignore; the payload stays raw bytes so application data is not
// re-encoded.

// Encode serializes m, sent by from (whose Addrs tell the receiver where to
// answer; its ID is checked against the authenticated connection).
func Encode(from transport.Peer, m Msg) ([]byte, error) {
	fj, err := json.Marshal(from)
	if err != nil {
		return nil, err
	}
	mj, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var payload []byte
	if r, ok := m.(*Route); ok {
		payload = r.Payload
	}
	out := make([]byte, 0, 2+2*binary.MaxVarintLen32+len(fj)+len(mj)+len(payload))
	out = append(out, WireVersion, byte(m.Kind()))
	out = binary.AppendUvarint(out, uint64(len(fj)))
	out = append(out, fj...)
	out = binary.AppendUvarint(out, uint64(len(mj)))
	out = append(out, mj...)
	return append(out, payload...), nil
}

// Decode parses a frame produced by Encode. It never panics; every error
// wraps ErrDecode and says what was wrong. Unknown JSON fields are ignored.
func Decode(b []byte) (transport.Peer, Msg, error) {
	var from transport.Peer
	if len(b) < 2 {
		return from, nil, fmt.Errorf("%w: frame of %d bytes is too short", ErrDecode, len(b))
	}
	if b[0] != WireVersion {
		return from, nil, fmt.Errorf("%w: unknown wire version %d (this node speaks %d)", ErrDecode, b[0], WireVersion)
	}
	k := Kind(b[1])
	m := newMsg(k)
	if m == nil {
		return from, nil, fmt.Errorf("%w: unknown message kind %d", ErrDecode, b[1])
	}
	rest := b[2:]
	fj, rest, err := chunk(rest, "sender")
	if err != nil {
		return from, nil, err
	}
	mj, rest, err := chunk(rest, k.String())
	if err != nil {
		return from, nil, err
	}
	if err := json.Unmarshal(fj, &from); err != nil {
		return from, nil, fmt.Errorf("%w: sender: %v", ErrDecode, err)
	}
	if err := json.Unmarshal(mj, m); err != nil {
		return from, nil, fmt.Errorf("%w: %s: %v", ErrDecode, k, err)
	}
	if r, ok := m.(*Route); ok {
		if len(rest) > 0 {
			r.Payload = append([]byte(nil), rest...)
		}
	} else if len(rest) != 0 {
		return from, nil, fmt.Errorf("%w: %s: %d trailing bytes", ErrDecode, k, len(rest))
	}
	if err := validate(from, m); err != nil {
		return from, nil, err
	}
	return from, m, nil
}

func chunk(b []byte, what string) ([]byte, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return nil, nil, fmt.Errorf("%w: %s: bad length prefix", ErrDecode, what)
	}
	if n > maxHeader || n > uint64(len(b)-w) {
		return nil, nil, fmt.Errorf("%w: %s: length %d exceeds frame (%d bytes left, limit %d)", ErrDecode, what, n, len(b)-w, maxHeader)
	}
	return b[w : w+int(n)], b[w+int(n):], nil
}

func validatePeer(p transport.Peer, what string) error {
	if len(p.Addrs) > maxAddrs {
		return fmt.Errorf("%w: %s has %d addresses, limit %d", ErrDecode, what, len(p.Addrs), maxAddrs)
	}
	return nil
}

func validateMembers(ms []Member, what string) error {
	if len(ms) > maxMembers {
		return fmt.Errorf("%w: %s has %d entries, limit %d", ErrDecode, what, len(ms), maxMembers)
	}
	for _, m := range ms {
		if err := validatePeer(m.Peer, what); err != nil {
			return err
		}
	}
	return nil
}

func validate(from transport.Peer, m Msg) error {
	if err := validatePeer(from, "sender"); err != nil {
		return err
	}
	switch m := m.(type) {
	case *Route:
		if m.Hops < 0 {
			return fmt.Errorf("%w: route: negative hop count %d", ErrDecode, m.Hops)
		}
		if m.Joiner != nil && m.Joiner.ID != m.Key {
			return fmt.Errorf("%w: route: join for %s carries key %s", ErrDecode, m.Joiner.ID.Short(), m.Key.Short())
		}
		return validatePeer(m.Src, "route source")
	case *JoinReply:
		if len(m.Table) > maxMembers {
			return fmt.Errorf("%w: join-reply table has %d entries, limit %d", ErrDecode, len(m.Table), maxMembers)
		}
		return validateMembers(m.Leaf, "join-reply leaf set")
	case *Hello:
		return validateMembers(m.Leaf, "hello leaf set")
	case *HelloAck:
		return validateMembers(m.Leaf, "hello-ack leaf set")
	case *Heartbeat:
		return validateMembers(m.Leaf, "heartbeat leaf set")
	case *Failed:
		return validateMembers(m.Leaf, "failed leaf set")
	case *Leave:
		return validateMembers(m.Leaf, "leave leaf set")
	case *LeafReply:
		return validateMembers(m.Leaf, "leaf-reply leaf set")
	case *RowReq:
		if m.Row < 0 || m.Row >= id.Digits {
			return fmt.Errorf("%w: row-req: row %d out of range [0,%d)", ErrDecode, m.Row, id.Digits)
		}
	case *RowReply:
		if m.Row < 0 || m.Row >= id.Digits {
			return fmt.Errorf("%w: row-reply: row %d out of range [0,%d)", ErrDecode, m.Row, id.Digits)
		}
		if len(m.Entries) > maxMembers {
			return fmt.Errorf("%w: row-reply has %d entries, limit %d", ErrDecode, len(m.Entries), maxMembers)
		}
	case *PingReq:
		return validatePeer(m.Target, "ping-req target")
	}
	return nil
}
