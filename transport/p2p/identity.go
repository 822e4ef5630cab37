package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/transport"
)

// KeyFile is the name of the identity key file inside Config.DataDir.
const KeyFile = "identity.key"

// IDFromPeerID derives the node ID of a libp2p peer from the public key its
// peer ID embeds. It fails for peer IDs that are hashes of larger keys (RSA,
// ECDSA): such peers cannot be checked from their address alone.
func IDFromPeerID(pid peer.ID) (id.ID, error) {
	if err := pid.Validate(); err != nil {
		return id.ID{}, fmt.Errorf("p2p: peer ID: %w", err)
	}
	pk, err := pid.ExtractPublicKey()
	if err != nil {
		if errors.Is(err, peer.ErrNoPublicKey) {
			return id.ID{}, fmt.Errorf("%w: %s", ErrNoPublicKey, pid)
		}
		return id.ID{}, fmt.Errorf("p2p: peer ID %s: %v", pid, err)
	}
	return idFromPubKey(pk)
}

func idFromPubKey(pk crypto.PubKey) (id.ID, error) {
	b, err := crypto.MarshalPublicKey(pk)
	if err != nil {
		return id.ID{}, fmt.Errorf("p2p: marshal public key: %v", err)
	}
	return id.FromPublicKey(b), nil
}

// ParsePeer turns full multiaddrs, each ending in /p2p/<peer-id> and all
// naming the same peer, into a transport.Peer whose ID is derived from that
// peer's public key. The returned Addrs are the addresses in canonical form.
func ParsePeer(addrs ...string) (transport.Peer, error) {
	pa, err := parseAddrs(addrs)
	if err != nil {
		return transport.Peer{}, err
	}
	return transport.Peer{ID: pa.id, Addrs: pa.strs}, nil
}

// parsedAddrs is a peer's addresses, checked and split for libp2p.
type parsedAddrs struct {
	id    id.ID
	pid   peer.ID
	addrs []ma.Multiaddr // transport parts, without /p2p/
	strs  []string       // full canonical addresses
}

func parseAddrs(addrs []string) (parsedAddrs, error) {
	var pa parsedAddrs
	if len(addrs) == 0 {
		return pa, fmt.Errorf("%w: no addresses", transport.ErrNoAddress)
	}
	for _, s := range addrs {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return pa, fmt.Errorf("%w %q: %v", ErrBadAddr, s, err)
		}
		tr, pid := peer.SplitAddr(m)
		if pid == "" {
			return pa, fmt.Errorf("%w: %q", ErrNoPeerID, s)
		}
		if len(tr) == 0 {
			return pa, fmt.Errorf("%w %q: nothing to dial before /p2p/", ErrBadAddr, s)
		}
		if pa.pid == "" {
			pa.pid = pid
		} else if pid != pa.pid {
			return pa, fmt.Errorf("%w: %q names %s, but %q names %s", ErrPeerMismatch, addrs[0], pa.pid, s, pid)
		}
		pa.addrs = append(pa.addrs, tr)
		pa.strs = append(pa.strs, m.String())
	}
	nid, err := IDFromPeerID(pa.pid)
	if err != nil {
		return pa, err
	}
	pa.id = nid
	return pa, nil
}

// loadIdentity returns the node's private key: a fresh one if dir is "",
// else the one stored in dir, created on first use.
func loadIdentity(dir string, log *slog.Logger) (crypto.PrivKey, error) {
	if dir == "" {
		priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("p2p: generate key: %w", err)
		}
		return priv, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("p2p: create data dir: %w", err)
	}
	path := filepath.Join(dir, KeyFile)
	if priv, err := readIdentity(path, log); !errors.Is(err, fs.ErrNotExist) {
		return priv, err
	}
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("p2p: generate key: %w", err)
	}
	raw, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("p2p: marshal key: %w", err)
	}
	switch err := writeNew(dir, path, raw); {
	case errors.Is(err, fs.ErrExist):
		// Another process created the key first; use theirs.
		return readIdentity(path, log)
	case err != nil:
		return nil, fmt.Errorf("p2p: write identity key: %w", err)
	}
	log.Info("created identity key", "path", path)
	return priv, nil
}

// readIdentity reads an Ed25519 key; the error wraps fs.ErrNotExist if the
// file is absent.
func readIdentity(path string, log *slog.Logger) (crypto.PrivKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("p2p: read identity key: %w", err)
	}
	priv, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrBadIdentity, path, err)
	}
	if priv.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("%w %s: want an Ed25519 key, got %s", ErrBadIdentity, path, priv.Type())
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("identity key is accessible to other users", "path", path, "mode", fi.Mode().Perm())
	}
	return priv, nil
}

// writeNew writes raw to path, mode 0600, all or nothing: it writes a
// temporary file and links it into place, so a crash never leaves a partial
// key, and it fails with fs.ErrExist rather than replace an existing key.
func writeNew(dir, path string, raw []byte) error {
	tmp, err := os.CreateTemp(dir, "."+KeyFile+".*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		// No hard links on this file system: create exclusively instead.
		if err := writeExclusive(path, raw); err != nil {
			return err
		}
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: make the new name durable
		d.Close()
	}
	return nil
}

func writeExclusive(path string, raw []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(raw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
