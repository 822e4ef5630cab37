// Package p2pbench measures plain libp2p request/response on loopback: the
// baselines that `shoal bench rpc` compares Shoal's service calls against.
//
// Its hosts are built with p2p.HostOptions, so they use exactly the
// transports, security (Noise, then TLS) and muxer (yamux) of Shoal's own
// transport; they listen on 127.0.0.1 over TCP only. Two cases:
//
//   - NewStream: the way libp2p protocols usually work. Each call opens a new
//     stream, writes one length-prefixed request, reads one length-prefixed
//     reply and closes the stream; the handler reads the request, writes it
//     back and closes.
//   - Floor: one long-lived stream per caller, opened once; each call writes
//     a request and reads the reply on it. With one caller this is the
//     round-trip floor of the libp2p stack on this machine.
//
// Frames are a uvarint length then the bytes (transport.WriteFrame's
// format). Replies are checked against requests.
package p2pbench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/shoal-p2p/shoal/internal/bench/load"
	"github.com/shoal-p2p/shoal/transport/p2p"
)

// Protocols the benchmark hosts speak.
const (
	EchoProtocol  protocol.ID = "/shoal-bench/echo/1.0.0"  // one request per stream
	FloorProtocol protocol.ID = "/shoal-bench/floor/1.0.0" // many requests per stream
)

// MaxPayload is the largest payload accepted, in bytes.
const MaxPayload = 1 << 20

// SetupTimeout bounds starting the two hosts and connecting them.
const SetupTimeout = 10 * time.Second

// Options configure one measurement.
type Options struct {
	Load    load.Config // callers, warm-up and window
	Payload int         // request (and reply) size in bytes, 1 to MaxPayload
}

// Validate reports the first setting that cannot work.
func (o Options) Validate() error {
	if o.Payload < 1 || o.Payload > MaxPayload {
		return fmt.Errorf("p2pbench: Payload must be in [1, %d] bytes, got %d", MaxPayload, o.Payload)
	}
	return o.Load.Validate()
}

// Result is one measurement plus what the connection negotiated.
type Result struct {
	load.Result
	Security string // security protocol, e.g. /noise
	Muxer    string // stream multiplexer, e.g. /yamux/1.0.0
}

// ErrMismatch is returned when a reply differs from its request.
var ErrMismatch = errors.New("p2pbench: reply differs from request")

// NewStream measures request/response with a new stream per request.
// ctx bounds the whole measurement: when it ends the hosts are closed,
// which ends every call in flight.
func NewStream(ctx context.Context, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	p, err := newPair(ctx)
	if err != nil {
		return Result{}, err
	}
	defer p.close()
	p.srv.SetStreamHandler(EchoProtocol, func(st network.Stream) {
		buf := make([]byte, 0, binary.MaxVarintLen64+o.Payload)
		if buf, err := readFrame(st, buf); err == nil {
			_, _ = st.Write(buf)
		}
		st.Close()
	})
	bufs := make([][]byte, o.Load.Concurrency)
	req := frame(o.Payload)
	r, err := load.Run(ctx, o.Load, func(ctx context.Context, w int) error {
		st, err := p.cli.NewStream(ctx, p.srv.ID(), EchoProtocol)
		if err != nil {
			return fmt.Errorf("open stream: %w", err)
		}
		if _, err := st.Write(req); err != nil {
			st.Reset()
			return fmt.Errorf("write request: %w", err)
		}
		bufs[w], err = readFrame(st, bufs[w][:0])
		if err != nil {
			st.Reset()
			return fmt.Errorf("read reply: %w", err)
		}
		st.Close()
		if !bytes.Equal(bufs[w], req) {
			return ErrMismatch
		}
		return nil
	})
	return p.result(r, err)
}

// Floor measures request/response on long-lived streams, one per caller,
// opened on each caller's first call (inside the warm-up).
func Floor(ctx context.Context, o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	p, err := newPair(ctx)
	if err != nil {
		return Result{}, err
	}
	defer p.close()
	p.srv.SetStreamHandler(FloorProtocol, func(st network.Stream) {
		defer st.Close()
		buf := make([]byte, 0, binary.MaxVarintLen64+o.Payload)
		for {
			var err error
			if buf, err = readFrame(st, buf[:0]); err != nil {
				return
			}
			if _, err := st.Write(buf); err != nil {
				return
			}
		}
	})
	streams := make([]network.Stream, o.Load.Concurrency)
	defer func() {
		for _, st := range streams {
			if st != nil {
				st.Close()
			}
		}
	}()
	bufs := make([][]byte, o.Load.Concurrency)
	req := frame(o.Payload)
	r, err := load.Run(ctx, o.Load, func(ctx context.Context, w int) error {
		if streams[w] == nil {
			st, err := p.cli.NewStream(ctx, p.srv.ID(), FloorProtocol)
			if err != nil {
				return fmt.Errorf("open stream: %w", err)
			}
			streams[w] = st
		}
		st := streams[w]
		if _, err := st.Write(req); err != nil {
			return fmt.Errorf("write request: %w", err)
		}
		var err error
		if bufs[w], err = readFrame(st, bufs[w][:0]); err != nil {
			return fmt.Errorf("read reply: %w", err)
		}
		if !bytes.Equal(bufs[w], req) {
			return ErrMismatch
		}
		return nil
	})
	return p.result(r, err)
}

// pair is a client host connected to a server host.
type pair struct {
	cli, srv host.Host
	stop     func() bool // stops the close-on-cancel watchdog
}

// newPair starts two hosts configured as Shoal's transport, listening on
// 127.0.0.1 over TCP, and connects the client to the server. When ctx ends
// both hosts are closed, so nothing blocks past it.
func newPair(ctx context.Context) (*pair, error) {
	cfg := p2p.DefaultConfig()
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	var hosts [2]host.Host
	for i := range hosts {
		opts, err := p2p.HostOptions(cfg)
		if err != nil {
			closeHosts(hosts[:i])
			return nil, err
		}
		h, err := libp2p.New(opts...)
		if err != nil {
			closeHosts(hosts[:i])
			return nil, fmt.Errorf("p2pbench: start libp2p host: %w", err)
		}
		hosts[i] = h
	}
	p := &pair{cli: hosts[0], srv: hosts[1]}
	cctx, cancel := context.WithTimeout(ctx, SetupTimeout)
	defer cancel()
	if err := p.cli.Connect(cctx, peer.AddrInfo{ID: p.srv.ID(), Addrs: p.srv.Addrs()}); err != nil {
		closeHosts(hosts[:])
		return nil, fmt.Errorf("p2pbench: connect the two hosts on loopback: %w", err)
	}
	p.stop = context.AfterFunc(ctx, func() { closeHosts(hosts[:]) })
	return p, nil
}

func (p *pair) close() {
	p.stop()
	closeHosts([]host.Host{p.cli, p.srv})
}

// result adds the negotiated protocols to a load result.
func (p *pair) result(r load.Result, err error) (Result, error) {
	res := Result{Result: r}
	if conns := p.cli.Network().ConnsToPeer(p.srv.ID()); len(conns) > 0 {
		cs := conns[0].ConnState()
		res.Security, res.Muxer = string(cs.Security), string(cs.StreamMultiplexer)
	}
	return res, err
}

func closeHosts(hs []host.Host) {
	for _, h := range hs {
		if h != nil {
			h.Close()
		}
	}
}

// frame returns a request frame: uvarint length, then n bytes.
func frame(n int) []byte {
	b := binary.AppendUvarint(nil, uint64(n))
	for i := range n {
		b = append(b, byte('a'+i%26))
	}
	return b
}

// readFrame appends one whole frame (length prefix included) read from r to
// buf. It reads the prefix a byte at a time so it never consumes past the
// frame, as a length-delimited libp2p protocol does without a buffered
// reader per stream.
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var one [1]byte
	var n uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= 63 {
			return buf, errors.New("p2pbench: frame length overflows")
		}
		if _, err := io.ReadFull(r, one[:]); err != nil {
			return buf, err
		}
		buf = append(buf, one[0])
		n |= uint64(one[0]&0x7f) << shift
		if one[0] < 0x80 {
			break
		}
	}
	if n > MaxPayload {
		return buf, fmt.Errorf("p2pbench: frame of %d bytes exceeds %d", n, MaxPayload)
	}
	start := len(buf)
	buf = append(buf, make([]byte, n)...)
	_, err := io.ReadFull(r, buf[start:])
	return buf, err
}
