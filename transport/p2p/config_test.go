package p2p

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	tests := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.MaxFrame = -1 }, "p2p: MaxFrame must be > 0, got -1"},
		{func(c *Config) { c.QueueLen = -5 }, "p2p: QueueLen must be > 0, got -5"},
		{func(c *Config) { c.DialTimeout = -time.Second }, "p2p: DialTimeout must be > 0, got -1s"},
		{func(c *Config) { c.WriteTimeout = -time.Second }, "p2p: WriteTimeout must be > 0, got -1s"},
		{func(c *Config) { c.Listen = []string{"tcp:4001"} }, `p2p: Listen address "tcp:4001": `},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.mod(&c)
		err := c.Validate()
		if err == nil || len(err.Error()) < len(tt.want) || err.Error()[:len(tt.want)] != tt.want {
			t.Errorf("got %v, want %q", err, tt.want)
		}
		if _, nerr := New(context.Background(), c); nerr == nil {
			t.Errorf("New accepted a config failing with %v", err)
		}
	}
}

func TestDefaultsAreSafe(t *testing.T) {
	c := DefaultConfig()
	if c.EnableNAT {
		t.Error("EnableNAT is on by default")
	}
	if c.DataDir != "" {
		t.Error("DefaultConfig persists a key")
	}
	d := (Config{}).withDefaults()
	if d.MaxFrame != c.MaxFrame || d.QueueLen != c.QueueLen || d.DialTimeout != c.DialTimeout || len(d.Listen) != 2 {
		t.Errorf("zero Config does not take the defaults: %+v", d)
	}
}

// TestNATOffByDefault applies the host options without starting a host
// (which with NAT on would search the LAN for gateways).
func TestNATOffByDefault(t *testing.T) {
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.EnableNAT = on
		var lc libp2p.Config
		if err := lc.Apply(hostOptions(cfg, priv)...); err != nil {
			t.Fatalf("EnableNAT=%v: %v", on, err)
		}
		if got := lc.NATManager != nil; got != on {
			t.Errorf("EnableNAT=%v: port mapping %v", on, got)
		}
		if lc.EnableHolePunching != on {
			t.Errorf("EnableNAT=%v: hole punching %v", on, lc.EnableHolePunching)
		}
		if !lc.RelayCustom || lc.Relay != on {
			t.Errorf("EnableNAT=%v: relay %v (custom %v)", on, lc.Relay, lc.RelayCustom)
		}
		if lc.EnableAutoRelay || lc.AutoNATConfig.EnableService {
			t.Errorf("EnableNAT=%v: auto relay or AutoNAT service on", on)
		}
	}
}
