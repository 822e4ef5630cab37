package ring

import (
	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// Kind tags a ring protocol message on the wire. Values never change meaning;
// new kinds get new numbers (see docs/compatibility.md).
type Kind uint8

// The ring protocol's message kinds.
const (
	KindRoute      Kind = 1  // a message routed towards the owner of a key
	KindHopAck     Kind = 2  // per-hop acknowledgement of a Route
	KindJoinReply  Kind = 3  // routing state sent to a joining node
	KindHello      Kind = 4  // a joining node introduces itself to its leaf set
	KindHelloAck   Kind = 5  // answer to Hello, with the sender's leaf set
	KindHeartbeat  Kind = 6  // keep-alive to an immediate neighbour, with leaf set
	KindProbe      Kind = 7  // are you alive?
	KindProbeAck   Kind = 8  // yes
	KindPingReq    Kind = 9  // please probe this node for me (indirect probe)
	KindPingReqAck Kind = 10 // it answered you
	KindFailed     Kind = 11 // a leaf-set member was found dead
	KindLeave      Kind = 12 // graceful departure
	KindLeafReq    Kind = 13 // send me your leaf set
	KindLeafReply  Kind = 14 // here it is
	KindRowReq     Kind = 15 // send me row r of your routing table
	KindRowReply   Kind = 16 // here it is
	maxKind             = KindRowReply
)

var kindNames = [...]string{
	KindRoute: "route", KindHopAck: "hop-ack", KindJoinReply: "join-reply", KindHello: "hello",
	KindHelloAck: "hello-ack", KindHeartbeat: "heartbeat", KindProbe: "probe", KindProbeAck: "probe-ack",
	KindPingReq: "ping-req", KindPingReqAck: "ping-req-ack", KindFailed: "failed", KindLeave: "leave",
	KindLeafReq: "leaf-req", KindLeafReply: "leaf-reply", KindRowReq: "row-req", KindRowReply: "row-reply",
}

func (k Kind) String() string {
	if k == 0 || k > maxKind {
		return "unknown"
	}
	return kindNames[k]
}

// Maintenance reports whether a kind is overlay upkeep rather than carrying
// application traffic (Route and HopAck).
func (k Kind) Maintenance() bool { return k != KindRoute && k != KindHopAck }

// Msg is one ring protocol message. The sender is not part of the message:
// it comes from the authenticated connection.
type Msg interface{ Kind() Kind }

// Member is a leaf-set entry as gossiped: a peer and how long ago (in
// milliseconds) the gossiping node, or its source, last heard from it
// directly. Age -1 means never directly heard.
type Member struct {
	transport.Peer
	Age int64 `json:"age_ms"`
}

// Route carries an application payload (or a join request) towards the live
// node closest to Key.
type Route struct {
	Key  id.ID          `json:"key"`
	Src  transport.Peer `json:"src"`
	ID   uint64         `json:"id"`   // unique per source; with Src.ID it names the message
	Hops int            `json:"hops"` // forwards so far
	Seq  uint64         `json:"seq"`  // per-hop sequence, acknowledged by HopAck
	// Via, when set, asks the receiver to pass the message straight to that
	// node: a relay around a link the sender cannot use.
	Via *id.ID `json:"via,omitempty"`
	// Joiner, when set, makes this a join request for Key == Joiner.ID.
	Joiner  *transport.Peer `json:"joiner,omitempty"`
	Payload []byte          `json:"-"`
}

// HopAck acknowledges receipt of a Route with the given per-hop sequence.
type HopAck struct {
	Seq uint64 `json:"seq"`
}

// JoinReply is sent by each node on a join path to the joiner: its routing
// table and, from the final node, its leaf set.
type JoinReply struct {
	Table []transport.Peer `json:"table,omitempty"`
	Leaf  []Member         `json:"leaf,omitempty"`
	Final bool             `json:"final,omitempty"`
}

// Hello is sent by a node to each member of the leaf set it is assembling.
type Hello struct {
	Leaf []Member `json:"leaf,omitempty"`
}

// HelloAck answers Hello with the receiver's leaf set.
type HelloAck struct {
	Leaf []Member `json:"leaf,omitempty"`
}

// Heartbeat is the keep-alive between immediate neighbours.
type Heartbeat struct {
	Leaf  []Member `json:"leaf,omitempty"`
	Reply bool     `json:"reply,omitempty"` // answer at once (a new neighbour wants a lease)
}

// Probe asks whether the receiver is alive.
type Probe struct {
	Nonce uint64 `json:"nonce"`
}

// ProbeAck answers a Probe.
type ProbeAck struct {
	Nonce uint64 `json:"nonce"`
}

// PingReq asks the receiver to probe Target on the sender's behalf.
type PingReq struct {
	Target transport.Peer `json:"target"`
	Nonce  uint64         `json:"nonce"`
}

// PingReqAck reports that Target answered an indirect probe.
type PingReqAck struct {
	Target id.ID  `json:"target"`
	Nonce  uint64 `json:"nonce"`
}

// Failed tells leaf-set members that Dead stopped answering. Age is how long
// ago the sender last heard from it, in milliseconds; a receiver that heard
// from Dead more recently keeps it.
type Failed struct {
	Dead id.ID    `json:"dead"`
	Age  int64    `json:"age_ms"`
	Leaf []Member `json:"leaf,omitempty"`
}

// Leave announces a graceful departure.
type Leave struct {
	Leaf []Member `json:"leaf,omitempty"`
}

// LeafReq asks for the receiver's leaf set.
type LeafReq struct{}

// LeafReply carries a leaf set.
type LeafReply struct {
	Leaf []Member `json:"leaf,omitempty"`
}

// RowReq asks for one row of the receiver's routing table.
type RowReq struct {
	Row int `json:"row"`
}

// RowReply carries one routing-table row.
type RowReply struct {
	Row     int              `json:"row"`
	Entries []transport.Peer `json:"entries,omitempty"`
}

// Kind implementations.
func (*Route) Kind() Kind      { return KindRoute }
func (*HopAck) Kind() Kind     { return KindHopAck }
func (*JoinReply) Kind() Kind  { return KindJoinReply }
func (*Hello) Kind() Kind      { return KindHello }
func (*HelloAck) Kind() Kind   { return KindHelloAck }
func (*Heartbeat) Kind() Kind  { return KindHeartbeat }
func (*Probe) Kind() Kind      { return KindProbe }
func (*ProbeAck) Kind() Kind   { return KindProbeAck }
func (*PingReq) Kind() Kind    { return KindPingReq }
func (*PingReqAck) Kind() Kind { return KindPingReqAck }
func (*Failed) Kind() Kind     { return KindFailed }
func (*Leave) Kind() Kind      { return KindLeave }
func (*LeafReq) Kind() Kind    { return KindLeafReq }
func (*LeafReply) Kind() Kind  { return KindLeafReply }
func (*RowReq) Kind() Kind     { return KindRowReq }
func (*RowReply) Kind() Kind   { return KindRowReply }

func newMsg(k Kind) Msg {
	switch k {
	case KindRoute:
		return &Route{}
	case KindHopAck:
		return &HopAck{}
	case KindJoinReply:
		return &JoinReply{}
	case KindHello:
		return &Hello{}
	case KindHelloAck:
		return &HelloAck{}
	case KindHeartbeat:
		return &Heartbeat{}
	case KindProbe:
		return &Probe{}
	case KindProbeAck:
		return &ProbeAck{}
	case KindPingReq:
		return &PingReq{}
	case KindPingReqAck:
		return &PingReqAck{}
	case KindFailed:
		return &Failed{}
	case KindLeave:
		return &Leave{}
	case KindLeafReq:
		return &LeafReq{}
	case KindLeafReply:
		return &LeafReply{}
	case KindRowReq:
		return &RowReq{}
	case KindRowReply:
		return &RowReply{}
	}
	return nil
}
