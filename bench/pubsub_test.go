package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	shoalbench "github.com/shoal-p2p/shoal/internal/bench"
)

func TestUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Cases:"},
		{[]string{"bogus"}, 2, `unknown case "bogus"`},
		{[]string{"pubsub", "--system", "nats"}, 2, "--system must be gossipsub or shoal"},
		{[]string{"pubsub", "--nodes", "1"}, 2, "Nodes must be in [2, 200]"},
		{[]string{"pubsub", "--nodes", "5", "--connect", "5"}, 2, "--connect must be in [1, nodes-1]"},
		{[]string{"pubsub", "extra"}, 2, `unexpected argument "extra"`},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", c.args, code, errb.String(), c.code, c.want)
		}
	}
}

// A short gossipsub run on 6 loopback hosts: every message reaches every
// subscriber, and copies are counted. Nothing is asserted about speed.
func TestGossipSubShortRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := gossipSub(ctx, shoalbench.PubSubConfig{Nodes: 6, Messages: 20, Interval: 5 * time.Millisecond}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if res.System != "gossipsub" || res.Subscribers != 5 || res.Deliveries != 100 || res.DeliveredPct != 100 {
		t.Fatalf("%+v", res)
	}
	// Every delivery is at least one copy received.
	if res.MsgsPerDelivery < 1 || res.P99ms < res.P50ms || res.P50ms <= 0 {
		t.Fatalf("%+v", res)
	}
	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(buf.Bytes(), &fields); err != nil || fields["system"] != "gossipsub" {
		t.Fatalf("%v: %s", err, buf.String())
	}
}
