package ring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

var (
	codecA = transport.Peer{ID: id.HashString("a"), Addrs: []string{"/ip4/10.0.0.1/udp/4001/quic-v1", "/ip6/::1/tcp/4001"}}
	codecB = transport.Peer{ID: id.HashString("b")}
	codecC = transport.Peer{ID: id.HashString("c"), Addrs: []string{"/dns4/c.example/tcp/1"}}
)

// sampleMsgs returns one or more well-formed messages of every kind.
func sampleMsgs() []Msg {
	via := id.HashString("via")
	joiner := codecC
	leaf := []Member{{Peer: codecA, Age: 0}, {Peer: codecB, Age: -1}, {Peer: codecC, Age: math.MaxInt64}}
	return []Msg{
		&Route{Key: id.HashString("k"), Src: codecA, ID: 1, Hops: 3, Seq: 9, Payload: []byte("hello\x00world")},
		&Route{Key: id.HashString("k"), Src: codecB, ID: math.MaxUint64, Seq: math.MaxUint64},
		&Route{Key: codecC.ID, Src: codecC, ID: 2, Joiner: &joiner},
		&Route{Key: id.HashString("k2"), Src: codecA, ID: 3, Hops: 1, Via: &via, Payload: bytes.Repeat([]byte{0xff}, 300)},
		&HopAck{Seq: 1 << 60},
		&JoinReply{Table: []transport.Peer{codecA, codecB}, Leaf: leaf, Final: true},
		&JoinReply{Table: []transport.Peer{codecC}},
		&Hello{Leaf: leaf},
		&Hello{},
		&HelloAck{Leaf: leaf[:1]},
		&Heartbeat{Leaf: leaf, Reply: true},
		&Heartbeat{},
		&Probe{Nonce: 42},
		&ProbeAck{Nonce: 1<<53 + 1}, // not representable as a float64
		&PingReq{Target: codecC, Nonce: 7},
		&PingReqAck{Target: codecC.ID, Nonce: 7},
		&Failed{Dead: codecB.ID, Age: 12000, Leaf: leaf},
		&Failed{Dead: codecB.ID, Age: -1},
		&Leave{Leaf: leaf},
		&LeafReq{},
		&LeafReply{Leaf: leaf},
		&RowReq{Row: 0},
		&RowReq{Row: id.Digits - 1},
		&RowReply{Row: 5, Entries: []transport.Peer{codecA, codecC}},
		&RowReply{Row: 39},
	}
}

func TestCodecRoundTripEveryKind(t *testing.T) {
	seen := map[Kind]bool{}
	for _, m := range sampleMsgs() {
		seen[m.Kind()] = true
		for _, from := range []transport.Peer{codecA, codecB} {
			b, err := Encode(from, m)
			if err != nil {
				t.Fatalf("Encode(%s): %v", m.Kind(), err)
			}
			if b[0] != WireVersion || Kind(b[1]) != m.Kind() {
				t.Fatalf("%s: frame starts %x, want version %d kind %d", m.Kind(), b[:2], WireVersion, m.Kind())
			}
			gotFrom, got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(Encode(%s)): %v\nframe: %q", m.Kind(), err, b)
			}
			if !reflect.DeepEqual(gotFrom, from) {
				t.Fatalf("%s: sender %+v, want %+v", m.Kind(), gotFrom, from)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("%s: decoded %#v, want %#v", m.Kind(), got, m)
			}
		}
	}
	for k := Kind(1); k <= maxKind; k++ {
		if !seen[k] {
			t.Errorf("no sample of kind %d (%s)", k, k)
		}
	}
}

func TestCodecRoutePayload(t *testing.T) {
	m := &Route{Key: id.HashString("k"), Src: codecA, ID: 1, Payload: []byte(`{"not":"json header"}`)}
	b, err := Encode(codecA, m)
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	r := got.(*Route)
	if !bytes.Equal(r.Payload, m.Payload) {
		t.Fatalf("payload %q, want %q", r.Payload, m.Payload)
	}
	// The payload is copied out of the frame: the transport may reuse it.
	for i := range b {
		b[i] = 0
	}
	if !bytes.Equal(r.Payload, m.Payload) {
		t.Fatalf("payload aliases the frame: now %q", r.Payload)
	}
	// An empty payload decodes as nil.
	b, _ = Encode(codecA, &Route{Key: m.Key, Src: codecA, ID: 2, Payload: []byte{}})
	_, got, err = Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if p := got.(*Route).Payload; p != nil {
		t.Fatalf("empty payload decoded as %#v, want nil", p)
	}
}

// frame assembles a frame by hand: version, kind, then the chunks with
// uvarint length prefixes, then raw trailing bytes.
func frame(version byte, k Kind, sender, msg string, trailing ...byte) []byte {
	b := []byte{version, byte(k)}
	b = binary.AppendUvarint(b, uint64(len(sender)))
	b = append(b, sender...)
	b = binary.AppendUvarint(b, uint64(len(msg)))
	b = append(b, msg...)
	return append(b, trailing...)
}

func senderJSON(p transport.Peer) string {
	return `{"id":"` + p.ID.String() + `"}`
}

func members(n, addrs int) []Member {
	out := make([]Member, n)
	for i := range out {
		out[i].ID = id.HashString(fmt.Sprint(i))
		for j := 0; j < addrs; j++ {
			out[i].Addrs = append(out[i].Addrs, "/ip4/127.0.0.1/tcp/1")
		}
	}
	return out
}

func peers(n int) []transport.Peer {
	out := make([]transport.Peer, n)
	for i := range out {
		out[i].ID = id.HashString(fmt.Sprint(i))
	}
	return out
}

func encodeOrDie(t *testing.T, from transport.Peer, m Msg) []byte {
	t.Helper()
	b, err := Encode(from, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCodecErrors(t *testing.T) {
	s := senderJSON(codecA)
	manyAddrs := transport.Peer{ID: codecA.ID, Addrs: make([]string, maxAddrs+1)}
	probe := encodeOrDie(t, codecA, &Probe{Nonce: 1})
	joiner := codecC
	tests := []struct {
		name string
		in   []byte
		want string // in the error message
	}{
		{"nil", nil, "too short"},
		{"one byte", []byte{WireVersion}, "too short"},
		{"version 0", frame(0, KindProbe, s, `{}`), "unknown wire version 0"},
		{"version 2", frame(2, KindProbe, s, `{}`), "unknown wire version 2"},
		{"kind 0", frame(WireVersion, 0, s, `{}`), "unknown message kind 0"},
		{"kind 17", frame(WireVersion, maxKind+1, s, `{}`), "unknown message kind 17"},
		{"kind 255", frame(WireVersion, 255, s, `{}`), "unknown message kind 255"},
		{"no sender length", []byte{WireVersion, byte(KindProbe)}, "sender: bad length prefix"},
		{"truncated sender length", []byte{WireVersion, byte(KindProbe), 0x80}, "sender: bad length prefix"},
		{"overflowing sender length", append([]byte{WireVersion, byte(KindProbe)}, bytes.Repeat([]byte{0xff}, 11)...), "sender: bad length prefix"},
		{"sender longer than frame", append([]byte{WireVersion, byte(KindProbe), 10}, `{}`...), "sender: length 10 exceeds frame"},
		{"sender of 4 GiB", binary.AppendUvarint([]byte{WireVersion, byte(KindProbe)}, 4<<30), "sender: length 4294967296 exceeds frame"},
		{"sender of 2^64-1", binary.AppendUvarint([]byte{WireVersion, byte(KindProbe)}, math.MaxUint64), "exceeds frame"},
		{"sender over the header limit", frame(WireVersion, KindProbe, `"`+strings.Repeat("x", maxHeader)+`"`, `{}`), "limit 262144"},
		{"no message length", probe[:len(probe)-len(`{"nonce":1}`)-1], "probe: bad length prefix"},
		{"message longer than frame", probe[:len(probe)-1], "probe: length 11 exceeds frame"},
		{"truncated message length", append(frame(WireVersion, KindProbe, s, "")[:len(frame(WireVersion, KindProbe, s, ""))-1], 0x81), "probe: bad length prefix"},
		{"trailing bytes on probe", append(bytes.Clone(probe), 'x'), "probe: 1 trailing bytes"},
		{"trailing bytes on leaf-req", frame(WireVersion, KindLeafReq, s, `{}`, 0, 0), "leaf-req: 2 trailing bytes"},
		{"sender not JSON", frame(WireVersion, KindProbe, `nope`, `{}`), "sender:"},
		{"empty sender", frame(WireVersion, KindProbe, ``, `{}`), "sender:"},
		{"empty message", frame(WireVersion, KindProbe, s, ``), "probe:"},
		{"message not JSON", frame(WireVersion, KindProbe, s, `{"nonce":`), "probe:"},
		{"two JSON values", frame(WireVersion, KindProbe, s, `{"nonce":1}{"nonce":2}`), "probe:"},
		{"wrong type", frame(WireVersion, KindProbe, s, `{"nonce":"1"}`), "probe:"},
		{"negative nonce", frame(WireVersion, KindProbe, s, `{"nonce":-1}`), "probe:"},
		{"nonce over 2^64", frame(WireVersion, KindProbe, s, `{"nonce":18446744073709551616}`), "probe:"},
		{"array for object", frame(WireVersion, KindHello, s, `[]`), "hello:"},
		{"short sender ID", frame(WireVersion, KindProbe, `{"id":"abcd"}`, `{}`), "sender:"},
		{"sender ID not hex", frame(WireVersion, KindProbe, `{"id":"`+strings.Repeat("z", 40)+`"}`, `{}`), "sender:"},
		{"sender ID as number", frame(WireVersion, KindProbe, `{"id":12}`, `{}`), "sender:"},
		{"target ID too long", frame(WireVersion, KindPingReqAck, s, `{"target":"`+strings.Repeat("0", 42)+`"}`), "ping-req-ack:"},
		{"deep nesting", frame(WireVersion, KindProbe, s, strings.Repeat(`{"x":`, 20000)+"1"+strings.Repeat("}", 20000)), "probe:"},
		{"hops overflow", frame(WireVersion, KindRoute, s, `{"key":"`+codecA.ID.String()+`","hops":1e40}`), "route:"},
		{"negative hops", encodeOrDie(t, codecA, &Route{Key: codecA.ID, Src: codecA, Hops: -1}), "negative hop count -1"},
		{"joiner for another key", encodeOrDie(t, codecA, &Route{Key: codecA.ID, Src: codecA, Joiner: &joiner}), "route: join for"},
		{"route source with too many addresses", encodeOrDie(t, codecA, &Route{Key: codecA.ID, Src: manyAddrs}), "route source has 33 addresses"},
		{"sender with too many addresses", encodeOrDie(t, manyAddrs, &LeafReq{}), "sender has 33 addresses"},
		{"ping target with too many addresses", encodeOrDie(t, codecA, &PingReq{Target: manyAddrs}), "ping-req target has 33 addresses"},
		{"row-req -1", encodeOrDie(t, codecA, &RowReq{Row: -1}), "row-req: row -1 out of range"},
		{"row-req 40", encodeOrDie(t, codecA, &RowReq{Row: id.Digits}), "row-req: row 40 out of range"},
		{"row-reply 40", encodeOrDie(t, codecA, &RowReply{Row: id.Digits}), "row-reply: row 40 out of range"},
		{"row-reply -5", encodeOrDie(t, codecA, &RowReply{Row: -5}), "row-reply: row -5 out of range"},
		{"row-reply too many entries", encodeOrDie(t, codecA, &RowReply{Entries: peers(maxMembers + 1)}), "row-reply has 1025 entries"},
		{"join-reply table too big", encodeOrDie(t, codecA, &JoinReply{Table: peers(maxMembers + 1)}), "join-reply table has 1025 entries"},
		{"join-reply leaf too big", encodeOrDie(t, codecA, &JoinReply{Leaf: members(maxMembers+1, 0)}), "join-reply leaf set has 1025 entries"},
		{"hello too many members", encodeOrDie(t, codecA, &Hello{Leaf: members(maxMembers+1, 0)}), "hello leaf set has 1025 entries"},
		{"hello-ack too many members", encodeOrDie(t, codecA, &HelloAck{Leaf: members(maxMembers+1, 0)}), "hello-ack leaf set"},
		{"heartbeat too many members", encodeOrDie(t, codecA, &Heartbeat{Leaf: members(maxMembers+1, 0)}), "heartbeat leaf set"},
		{"failed too many members", encodeOrDie(t, codecA, &Failed{Leaf: members(maxMembers+1, 0)}), "failed leaf set"},
		{"leave too many members", encodeOrDie(t, codecA, &Leave{Leaf: members(maxMembers+1, 0)}), "leave leaf set"},
		{"leaf-reply too many members", encodeOrDie(t, codecA, &LeafReply{Leaf: members(maxMembers+1, 0)}), "leaf-reply leaf set"},
		{"member with too many addresses", encodeOrDie(t, codecA, &Heartbeat{Leaf: members(3, maxAddrs+1)}), "heartbeat leaf set has 33 addresses"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			from, m, err := Decode(tc.in)
			if err == nil {
				t.Fatalf("Decode succeeded: from=%+v msg=%#v", from, m)
			}
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error %q does not wrap ErrDecode", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if m != nil {
				t.Fatalf("a failed Decode returned a message: %#v", m)
			}
		})
	}
}

// At the limits exactly, messages still decode.
func TestCodecLimitsInclusive(t *testing.T) {
	for _, m := range []Msg{
		&Hello{Leaf: members(maxMembers, 0)},
		&JoinReply{Table: peers(maxMembers), Leaf: members(maxMembers, 0)},
		&RowReply{Row: id.Digits - 1, Entries: peers(maxMembers)},
		&Heartbeat{Leaf: members(2, maxAddrs)},
		&Route{Key: codecA.ID, Src: codecA, Hops: math.MaxInt},
	} {
		if _, _, err := Decode(encodeOrDie(t, codecA, m)); err != nil {
			t.Errorf("%s at the limit: %v", m.Kind(), err)
		}
	}
}

// Newer nodes may add fields; older nodes ignore them (docs/compatibility.md).
func TestCodecIgnoresUnknownFields(t *testing.T) {
	tests := []struct {
		name   string
		k      Kind
		sender string
		msg    string
		want   Msg
	}{
		{"probe", KindProbe, `{"id":"` + codecA.ID.String() + `","region":"eu","v":[1,{"x":null}]}`, `{"nonce":5,"future":{"a":[1,2,3]},"flags":true}`, &Probe{Nonce: 5}},
		{"leaf-req with body", KindLeafReq, senderJSON(codecA), `{"since":12}`, &LeafReq{}},
		{"heartbeat member fields", KindHeartbeat, senderJSON(codecA),
			`{"leaf":[{"id":"` + codecB.ID.String() + `","age_ms":3,"rtt_ms":9}],"reply":true,"load":0.5}`,
			&Heartbeat{Leaf: []Member{{Peer: codecB, Age: 3}}, Reply: true}},
		{"route", KindRoute, senderJSON(codecA),
			`{"key":"` + codecB.ID.String() + `","src":{"id":"` + codecA.ID.String() + `"},"id":4,"priority":"high"}`,
			&Route{Key: codecB.ID, Src: transport.Peer{ID: codecA.ID}, ID: 4}},
		{"payload field in JSON is not the payload", KindRoute, senderJSON(codecA),
			`{"key":"` + codecB.ID.String() + `","Payload":"aGk="}`,
			&Route{Key: codecB.ID}},
		{"null message", KindProbe, senderJSON(codecA), `null`, &Probe{}},
		{"upper-case hex IDs", KindPingReqAck, senderJSON(codecA), `{"target":"` + strings.ToUpper(codecC.ID.String()) + `"}`, &PingReqAck{Target: codecC.ID}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			from, m, err := Decode(frame(WireVersion, tc.k, tc.sender, tc.msg))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if from.ID != codecA.ID {
				t.Fatalf("sender %s, want %s", from.ID, codecA.ID)
			}
			if !reflect.DeepEqual(m, tc.want) {
				t.Fatalf("got %#v, want %#v", m, tc.want)
			}
		})
	}
}

// encoding/json takes the last of duplicate keys and matches keys without
// regard to case. Decoding such frames must not panic; whatever it yields
// must be a valid message (the sender's identity always comes from the
// connection, never from these fields).
func TestCodecDuplicateAndCaseFoldedKeys(t *testing.T) {
	a, b := codecA.ID.String(), codecB.ID.String()
	tests := []struct {
		name        string
		k           Kind
		sender, msg string
		check       func(from transport.Peer, m Msg) bool
	}{
		{"duplicate nonce", KindProbe, senderJSON(codecA), `{"nonce":1,"nonce":2}`,
			func(_ transport.Peer, m Msg) bool { n := m.(*Probe).Nonce; return n == 1 || n == 2 }},
		{"case-folded nonce", KindProbe, senderJSON(codecA), `{"Nonce":1,"NONCE":2,"nonce":3}`,
			func(_ transport.Peer, m Msg) bool { n := m.(*Probe).Nonce; return n >= 1 && n <= 3 }},
		{"two sender IDs", KindLeafReq, `{"id":"` + a + `","ID":"` + b + `"}`, `{}`,
			func(from transport.Peer, _ Msg) bool { return from.ID == codecA.ID || from.ID == codecB.ID }},
		{"duplicate key then bad value", KindProbe, senderJSON(codecA), `{"nonce":1,"nonce":"x"}`, nil},
		{"duplicate leaf", KindHello, senderJSON(codecA), `{"leaf":[{"id":"` + a + `"}],"Leaf":[{"id":"` + b + `"},{"id":"` + b + `"}]}`,
			func(_ transport.Peer, m Msg) bool { n := len(m.(*Hello).Leaf); return n == 1 || n == 2 }},
		{"route key vs joiner, case-folded", KindRoute, senderJSON(codecA),
			`{"key":"` + a + `","joiner":{"id":"` + a + `"},"KEY":"` + b + `"}`, nil},
		{"duplicate row", KindRowReq, senderJSON(codecA), `{"row":1,"Row":400}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			from, m, err := Decode(frame(WireVersion, tc.k, tc.sender, tc.msg))
			if err != nil {
				if !errors.Is(err, ErrDecode) {
					t.Fatalf("error %v does not wrap ErrDecode", err)
				}
				return
			}
			if tc.check != nil && !tc.check(from, m) {
				t.Fatalf("decoded to an unexpected value: from=%+v msg=%#v", from, m)
			}
			// Whatever was accepted passed validation.
			if err := validate(from, m); err != nil {
				t.Fatalf("accepted an invalid message: %v", err)
			}
		})
	}
}

func TestKindNames(t *testing.T) {
	names := map[string]bool{}
	for k := Kind(1); k <= maxKind; k++ {
		s := k.String()
		if s == "unknown" || s == "" || names[s] {
			t.Fatalf("kind %d has name %q", k, s)
		}
		names[s] = true
		if m := newMsg(k); m == nil || m.Kind() != k {
			t.Fatalf("newMsg(%d) = %#v", k, m)
		}
		if want := k != KindRoute && k != KindHopAck; k.Maintenance() != want {
			t.Fatalf("%s.Maintenance() = %v", k, !want)
		}
	}
	for _, k := range []Kind{0, maxKind + 1, 255} {
		if k.String() != "unknown" || newMsg(k) != nil {
			t.Fatalf("kind %d: name %q, newMsg %v", k, k.String(), newMsg(k))
		}
	}
}

// FuzzDecode: Decode never panics, and whatever it accepts survives a round
// trip: Encode(Decode(x)) decodes to the same sender and message.
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMsgs() {
		for _, from := range []transport.Peer{codecA, codecB} {
			b, err := Encode(from, m)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	s := senderJSON(codecA)
	f.Add([]byte{})
	f.Add([]byte{WireVersion, byte(KindProbe), 0x80})
	f.Add(frame(WireVersion, KindProbe, s, `{"nonce":1,"Nonce":2,"x":[]}`))
	f.Add(frame(WireVersion, KindHello, `{"id":"`+codecA.ID.String()+`","addrs":[]}`, `{"leaf":[]}`))
	f.Add(frame(WireVersion, KindRoute, s, `{"key":"`+codecA.ID.String()+`","joiner":null,"via":null}`, 1, 2, 3))
	f.Add(frame(WireVersion, KindRowReply, s, `{"row":3,"entries":[{"id":"`+codecB.ID.String()+`","addrs":["\u00ff\ud800"]}]}`))

	f.Fuzz(func(t *testing.T, b []byte) {
		from, m, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v does not wrap ErrDecode", err)
			}
			if m != nil {
				t.Fatalf("error %v with a message %#v", err, m)
			}
			return
		}
		if m == nil {
			t.Fatal("Decode returned neither a message nor an error")
		}
		if Kind(b[1]) != m.Kind() {
			t.Fatalf("frame of kind %d decoded as %s", b[1], m.Kind())
		}
		enc, err := Encode(from, m)
		if err != nil {
			t.Fatalf("Encode of a decoded %s: %v", m.Kind(), err)
		}
		from2, m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded %s does not decode: %v\nfirst:  %q\nsecond: %q", m.Kind(), err, b, enc)
		}
		// JSON does not tell an empty list from an absent one (omitempty):
		// compare canonical encodings, which must be stable.
		enc2, err := Encode(from2, m2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed the %s:\nfirst:  %q\nsecond: %q", m.Kind(), enc, enc2)
		}
		if !reflect.DeepEqual(normalize(from), normalize(from2)) || !reflect.DeepEqual(normalize(m), normalize(m2)) {
			t.Fatalf("round trip changed the %s:\n%#v / %#v\n%#v / %#v", m.Kind(), from, m, from2, m2)
		}
	})
}

// normalize makes empty slices nil throughout v (a pointer, slice or struct
// of them), so that DeepEqual treats "absent" and "empty" alike.
func normalize[T any](v T) T {
	rv := reflect.ValueOf(&v).Elem()
	normalizeValue(rv)
	return v
}

func normalizeValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			normalizeValue(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).CanSet() {
				normalizeValue(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			if v.CanSet() {
				v.Set(reflect.Zero(v.Type()))
			}
			return
		}
		for i := 0; i < v.Len(); i++ {
			normalizeValue(v.Index(i))
		}
	}
}
