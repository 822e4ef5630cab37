package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestProbeRoundTrip(t *testing.T) {
	for _, c := range []struct {
		measured bool
		index    int
		size     int
	}{{true, 0, 9}, {false, 7, 100}, {true, 1 << 20, 3}} {
		b := EncodeProbe(c.measured, c.index, c.size)
		if len(b) != max(c.size, probeHeader) {
			t.Errorf("size %d: got %d bytes", c.size, len(b))
		}
		m, i, ok := DecodeProbe(b)
		if !ok || m != c.measured || i != c.index {
			t.Errorf("%+v: decoded %v %d %v", c, m, i, ok)
		}
	}
	for _, bad := range [][]byte{nil, []byte("short"), append([]byte{'z'}, make([]byte, 8)...)} {
		if _, _, ok := DecodeProbe(bad); ok {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestRecorder(t *testing.T) {
	r := NewRecorder(2, 3)
	if r.Warm() {
		t.Fatal("warm before any warm-up message")
	}
	r.Delivered(0, EncodeProbe(false, 0, 9), 0)
	r.Delivered(1, EncodeProbe(false, 5, 9), 0)
	if !r.Warm() {
		t.Fatal("not warm after every subscriber had one")
	}
	r.Delivered(0, EncodeProbe(true, 1, 9), 0) // not sent yet: a stray
	for i := range 3 {
		r.Sent(i)
	}
	r.Delivered(0, EncodeProbe(true, 0, 9), 10)
	r.Delivered(0, EncodeProbe(true, 2, 9), 12)
	r.Delivered(0, EncodeProbe(true, 1, 9), 11) // older than 12: out of order
	r.Delivered(0, EncodeProbe(true, 1, 9), 11) // again: a duplicate
	r.Delivered(1, EncodeProbe(true, 0, 9), 0)
	r.Delivered(1, EncodeProbe(true, 1, 9), 0)
	select {
	case <-r.Done():
		t.Fatal("done with a delivery missing")
	default:
	}
	r.Delivered(1, EncodeProbe(true, 2, 9), 0)
	<-r.Done()
	var res PubSubResult
	r.Fill(&res)
	if res.Deliveries != 6 || res.Expected != 6 || res.DeliveredPct != 100 || res.Duplicates != 1 || res.OutOfOrder != 1 ||
		res.Subscribers != 2 || res.Messages != 3 || r.strays != 1 {
		t.Fatalf("%+v, strays %d", res, r.strays)
	}
}

// A short run of the pubsub case on a 4-node loopback ring: every message
// reaches every subscriber once, in order, and the counts are consistent.
// Nothing is asserted about speed.
func TestPubSubShortRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var lines []string
	res, err := PubSub(ctx, PubSubConfig{Nodes: 4, Messages: 20, Interval: 5 * time.Millisecond,
		Progress: func(s string) { lines = append(lines, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.System != "shoal" || res.Nodes != 4 || res.Subscribers != 3 || res.Expected != 60 || res.Deliveries != 60 ||
		res.DeliveredPct != 100 || res.Duplicates != 0 || res.OutOfOrder != 0 {
		t.Fatalf("%+v", res)
	}
	// Each delivery needs at least one frame unless the root subscribes
	// itself; a tree needs no more than a publish hop or two plus one push
	// per subscriber.
	if res.MsgsPerDelivery <= 0 || res.MsgsPerDelivery > 2 || res.MsgsPerDeliveryAll < res.MsgsPerDelivery {
		t.Fatalf("wire counts: %+v", res)
	}
	if res.P50ms <= 0 || res.P99ms < res.P50ms || res.GoalMsgsMet == nil || len(lines) < 3 {
		t.Fatalf("%+v, progress %q", res, lines)
	}
	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if strings.Count(buf.String(), "\n") != 1 || json.Unmarshal(buf.Bytes(), &fields) != nil {
		t.Fatalf("not one JSON line: %s", buf.String())
	}
	for _, k := range []string{"system", "nodes", "messages", "p50_ms", "p99_ms", "delivered_pct", "msgs_per_delivery"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, buf.String())
		}
	}
	buf.Reset()
	if err := res.WriteText(&buf); err != nil || !strings.Contains(buf.String(), "wire messages per delivery") {
		t.Fatalf("text: %v\n%s", err, buf.String())
	}
}

func TestPubSubConfigValidate(t *testing.T) {
	for _, c := range []PubSubConfig{{Nodes: 1}, {Nodes: 201}, {Messages: -1}, {Payload: 3}, {Interval: -1}, {Drain: -1}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (PubSubConfig{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
}
