// Package p2p implements transport.Transport over go-libp2p. It is the only
// package in Shoal that imports libp2p.
//
// # Identity
//
// A node's libp2p key is Ed25519. Its ring ID is id.FromPublicKey applied to
// the marshalled public key (crypto.MarshalPublicKey). Ed25519 peer IDs embed
// the public key, so anyone holding a peer ID — or an address ending in
// /p2p/<peer-id> — can derive the node ID, and the ID reported for an inbound
// frame comes from the key proven in the Noise or TLS handshake, never from the
// frame itself. With Config.DataDir set, the key is kept in
// DataDir/identity.key and the node keeps its place on the ring across
// restarts.
//
// # Wire format
//
// Frames travel on streams of protocol ProtocolID, each encoded by
// transport.WriteFrame (uvarint length, then the bytes). A sender keeps one
// long-lived outbound stream per peer and never reads from it; a receiver
// reads frames until the stream ends. A malformed, oversized or truncated
// frame resets that one stream (with StreamProtocolViolation) and is counted
// in Stats.BadFrames; every other stream keeps working.
//
// # Sending
//
// Send copies the frame onto a bounded per-peer queue and returns at once. A
// goroutine per peer opens the stream on first use (and again after an
// error), writes queued frames through a buffered writer and flushes when the
// queue runs dry, so bursts are batched into few writes. When a dial or a
// write fails, the frames queued for that peer are dropped and
// Receiver.Unreachable is called; when the queue overflows, the frame is
// dropped and Unreachable is called with ErrQueueFull. Frames to one peer
// travel in order on one stream; only after a failure, when a new stream
// replaces the old one, can a frame overtake one still in flight on the old
// stream. Per-peer goroutines stay until Close.
//
// # Network reach
//
// By default the host listens on TCP and QUIC on all IPv4 interfaces and
// talks only to peers it is asked to reach and peers that connect to it: no
// UPnP/NAT-PMP port mapping, no hole punching, no relays. Config.EnableNAT
// turns all three on.
//
// libp2p logs through its own global logger (package gologshim, stderr by
// default); Config.Logger receives only this package's logs.
package p2p
