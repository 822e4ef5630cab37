package p2p

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoal-p2p/shoal/transport"
)

// TestBadFrames has a plain libp2p host write broken frames: each costs its
// stream only, and the node keeps serving the raw host and everyone else.
func TestBadFrames(t *testing.T) {
	logs := &syncBuffer{}
	a, ra := newTransport(t, Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	b, _ := newTransport(t, Config{})
	h := newRawHost(t)
	hid, err := IDFromPeerID(h.ID())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: a.pid, Addrs: a.host.Addrs()}); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		bytes     []byte
		closeSend bool   // half-close after writing
		reason    string // in the log line
	}{
		{"length claims 4 GiB", binary.AppendUvarint(nil, 4<<30), false, "frame too large"},
		{"truncated frame", transport.AppendFrame(nil, []byte("hello, world"))[:5], true, "unexpected EOF"},
		{"truncated length", []byte{0x80}, true, "unexpected EOF"},
		{"garbage", []byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xffgarbage"), false, "malformed frame"},
	}
	for i, tc := range cases {
		s, err := h.NewStream(ctx, a.pid, ProtocolID)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if _, err := s.Write(tc.bytes); err != nil {
			t.Fatalf("%s: write: %v", tc.name, err)
		}
		if tc.closeSend {
			if err := s.CloseWrite(); err != nil {
				t.Fatalf("%s: close: %v", tc.name, err)
			}
		}
		// The transport answers by resetting the stream.
		s.SetReadDeadline(time.Now().Add(wait))
		_, err = s.Read(make([]byte, 1))
		var se *network.StreamError
		if !errors.As(err, &se) || !se.Remote || se.ErrorCode != network.StreamProtocolViolation {
			t.Fatalf("%s: read got %v, want a remote reset for protocol violation", tc.name, err)
		}
		if got := a.Stats().BadFrames; got != uint64(i+1) {
			t.Fatalf("%s: BadFrames = %d, want %d", tc.name, got, i+1)
		}
		if out := logs.String(); !strings.Contains(out, tc.reason) {
			t.Fatalf("%s: log lacks %q:\n%s", tc.name, tc.reason, out)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "bad frame from peer"); n != len(cases) {
		t.Errorf("logged %d bad frames, want %d:\n%s", n, len(cases), out)
	}
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "subsys=p2p") ||
		!strings.Contains(out, "peer_id="+h.ID().String()) {
		t.Errorf("bad-frame log lacks level, subsys or peer:\n%s", out)
	}

	// Others still get through, and so does the offender on a new stream.
	send(t, b, only(t, a.Self(), "/tcp/"), "still here")
	expect(t, ra, b, "still here")

	s, err := h.NewStream(ctx, a.pid, ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	if err := transport.WriteFrame(s, []byte("sorry")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	f := ra.next(t)
	if f.from.ID != hid || string(f.data) != "sorry" {
		t.Fatalf("got %q from %s, want %q from the raw host", f.data, f.from.ID.Short(), "sorry")
	}
	if got := a.Stats(); got.BadFrames != uint64(len(cases)) || got.FramesIn != 2 {
		t.Fatalf("Stats = %+v", got)
	}
}
