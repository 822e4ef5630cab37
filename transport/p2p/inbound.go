package p2p

import (
	"bufio"
	"errors"
	"io"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/shoal-p2p/shoal/transport"
)

// readBufSize is the per-stream read buffer.
const readBufSize = 16 << 10

// handleStream reads frames from one inbound stream until it ends, handing
// each to the Receiver. A frame the peer got wrong resets this stream only.
func (t *Transport) handleStream(st network.Stream) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		st.Reset()
		return
	}
	t.wg.Add(1)
	r := t.recv
	t.mu.Unlock()
	defer t.wg.Done()

	conn := st.Conn()
	pid := conn.RemotePeer()
	from, err := IDFromPeerID(pid)
	if err != nil {
		t.log.Warn("refusing stream: peer ID does not give a node ID", "peer_id", pid, "err", err)
		st.ResetWithError(network.StreamProtocolViolation)
		return
	}
	addr := conn.RemoteMultiaddr().String() + "/p2p/" + pid.String()
	t.mu.Lock()
	t.known[from] = pid
	t.mu.Unlock()

	src := &errReader{r: st}
	br := bufio.NewReaderSize(src, readBufSize)
	for {
		frame, err := transport.ReadFrame(br, t.cfg.MaxFrame)
		switch {
		case err == nil:
			t.stats.framesIn.Add(1)
			r.Receive(transport.Peer{ID: from, Addrs: []string{addr}}, frame)
			continue
		case errors.Is(err, io.EOF):
			// The peer closed the stream between frames.
			st.Close()
		case src.err != nil:
			// The stream broke (reset, connection lost, Close): not the
			// peer's framing.
			t.log.Debug("inbound stream ended", "peer", from.Short(), "err", src.err)
			st.Reset()
		default:
			t.stats.badFrames.Add(1)
			t.log.Warn("bad frame from peer, resetting stream",
				"peer", from.Short(), "peer_id", pid, "addr", addr, "reason", err)
			st.ResetWithError(network.StreamProtocolViolation)
		}
		return
	}
}

// errReader remembers the first read error other than io.EOF, so that a
// broken stream can be told apart from a malformed frame (ReadFrame reports
// both through its own error values).
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}
