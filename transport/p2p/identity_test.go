package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

func TestIdentityPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	ids := make([]id.ID, 2)
	for i := range ids {
		tr, err := New(context.Background(), Config{DataDir: dir, Listen: loopback})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = tr.Self().ID
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if ids[0] != ids[1] {
		t.Fatalf("restart changed the ID: %s then %s", ids[0], ids[1])
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want 0700", di.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}

	// Without a DataDir every start is a new node.
	e1, _ := newTransport(t, Config{})
	e2, _ := newTransport(t, Config{})
	if e1.id == e2.id || e1.id == ids[0] {
		t.Error("ephemeral transports share an ID")
	}
}

func TestIdentityCorrupt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(context.Background(), Config{DataDir: dir, Listen: loopback})
	if !errors.Is(err, ErrBadIdentity) {
		t.Fatalf("got %v, want ErrBadIdentity", err)
	}

	// A valid key of the wrong type is refused too.
	priv, _, err := crypto.GenerateECDSAKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, KeyFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), Config{DataDir: dir, Listen: loopback})
	if !errors.Is(err, ErrBadIdentity) || !strings.Contains(err.Error(), "Ed25519") {
		t.Fatalf("got %v, want ErrBadIdentity naming Ed25519", err)
	}
}

func TestSelfIDMatchesKey(t *testing.T) {
	a, _ := newTransport(t, Config{})
	self := a.Self()
	pub, err := crypto.MarshalPublicKey(a.host.Peerstore().PubKey(a.pid))
	if err != nil {
		t.Fatal(err)
	}
	if self.ID != id.FromPublicKey(pub) {
		t.Fatal("Self().ID is not id.FromPublicKey of the host key")
	}
	if got, err := IDFromPeerID(a.pid); err != nil || got != self.ID {
		t.Fatalf("IDFromPeerID = %v, %v; want %v", got, err, self.ID)
	}
	if len(self.Addrs) < 2 {
		t.Fatalf("Self().Addrs = %v, want a TCP and a QUIC address", self.Addrs)
	}
	p, err := ParsePeer(self.Addrs...)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != self.ID || !slices.Equal(p.Addrs, self.Addrs) {
		t.Fatalf("ParsePeer(Self().Addrs) = %+v, want %+v", p, self)
	}
}

func TestParsePeer(t *testing.T) {
	newPID := func(gen func() (crypto.PrivKey, error)) peer.ID {
		t.Helper()
		priv, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		pid, err := peer.IDFromPrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	ed := func() (crypto.PrivKey, error) { k, _, err := crypto.GenerateEd25519Key(rand.Reader); return k, err }
	ec := func() (crypto.PrivKey, error) { k, _, err := crypto.GenerateECDSAKeyPair(rand.Reader); return k, err }
	pa, pb, pec := newPID(ed), newPID(ed), newPID(ec)
	tcpA := "/ip4/127.0.0.1/tcp/4001/p2p/" + pa.String()
	quicA := "/ip4/127.0.0.1/udp/4001/quic-v1/p2p/" + pa.String()
	wantA, err := IDFromPeerID(pa)
	if err != nil {
		t.Fatal(err)
	}

	errs := []struct {
		name  string
		addrs []string
		want  error
	}{
		{"none", nil, transport.ErrNoAddress},
		{"garbage", []string{"garbage"}, ErrBadAddr},
		{"unknown protocol", []string{"/ip4/127.0.0.1/bogus/1/p2p/" + pa.String()}, ErrBadAddr},
		{"bad peer ID", []string{"/ip4/127.0.0.1/tcp/1/p2p/QmNotAPeer"}, ErrBadAddr},
		{"no /p2p/", []string{"/ip4/127.0.0.1/tcp/4001"}, ErrNoPeerID},
		{"one of two without /p2p/", []string{tcpA, "/ip4/127.0.0.1/tcp/4002"}, ErrNoPeerID},
		{"only /p2p/", []string{"/p2p/" + pa.String()}, ErrBadAddr},
		{"two peers", []string{tcpA, "/ip4/127.0.0.1/tcp/4002/p2p/" + pb.String()}, ErrPeerMismatch},
		{"hashed key", []string{"/ip4/127.0.0.1/tcp/1/p2p/" + pec.String()}, ErrNoPublicKey},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePeer(tt.addrs...)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			t.Logf("%v", err)
		})
	}

	p, err := ParsePeer(tcpA, quicA)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != wantA || !slices.Equal(p.Addrs, []string{tcpA, quicA}) {
		t.Fatalf("ParsePeer = %+v", p)
	}
	// The CID spelling of a peer ID names the same peer; Addrs come back canonical.
	p, err = ParsePeer("/ip4/127.0.0.1/tcp/4001/p2p/" + peer.ToCid(pa).String())
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != wantA || p.Addrs[0] != tcpA {
		t.Fatalf("ParsePeer(CID form) = %+v", p)
	}
}
