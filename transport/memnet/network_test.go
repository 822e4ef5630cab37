package memnet

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/id"
)

func nodes(k int) []id.ID {
	out := make([]id.ID, k)
	for i := range out {
		out[i] = id.HashString(fmt.Sprint("node-", i))
	}
	return out
}

// delivery is one handler invocation as seen by a test.
type delivery struct {
	at       time.Duration // since the epoch
	from, to id.ID
	msg      any
}

// recorder attaches every node with a handler that records deliveries.
func recorder(n *Network, ids []id.ID) *[]delivery {
	var log []delivery
	for _, x := range ids {
		n.Attach(x, func(from id.ID, msg any) {
			log = append(log, delivery{n.Now().Sub(defaultStart), from, x, msg})
		})
	}
	return &log
}

func drain(n *Network) {
	for n.Step() {
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error, "" for valid
	}{
		{"zero", Config{}, ""},
		{"default", DefaultConfig(), ""},
		{"negative min", Config{MinLatency: -1}, "MinLatency must not be negative"},
		{"max below min", Config{MinLatency: 5 * time.Millisecond, MaxLatency: time.Millisecond}, "MaxLatency must be at least MinLatency"},
		{"loss high", Config{Loss: 1.5}, "memnet: Loss must be in [0,1), got 1.5"},
		{"loss one", Config{Loss: 1}, "Loss must be in [0,1)"},
		{"loss negative", Config{Loss: -0.1}, "Loss must be in [0,1)"},
		{"dup NaN", Config{Duplicate: nan()}, "Duplicate must be in [0,1), got NaN"},
		{"ok faults", Config{Loss: 0.5, Duplicate: 0.99, MinLatency: 1, MaxLatency: 1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func nan() float64 { z := 0.0; return z / z }

func TestNewPanicsOnInvalidConfig(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New with Loss 2 did not panic")
		}
	}()
	New(Config{Loss: 2})
}

// scenario runs a chatty, faulty network and returns a digest of its
// delivery trace and the trace's length.
func scenario(seed int64) (string, int) {
	cfg := DefaultConfig()
	cfg.Seed, cfg.Loss, cfg.Duplicate = seed, 0.05, 0.05
	n := New(cfg)
	ids := nodes(20)
	h := sha256.New()
	count := 0
	for _, x := range ids {
		n.Attach(x, func(from id.ID, msg any) {
			hops := msg.(int)
			fmt.Fprintf(h, "%v %s>%s %d\n", n.Now().Sub(defaultStart), from.Short(), x.Short(), hops)
			count++
			if hops < 10 {
				n.Send(x, ids[n.Rand().Intn(len(ids))], hops+1)
			}
		})
	}
	for i := range 200 {
		n.After(time.Duration(i)*time.Millisecond, func() {
			n.Send(ids[i%len(ids)], ids[(i*7+3)%len(ids)], 0)
		})
	}
	n.After(50*time.Millisecond, func() { n.Partition(ids[:5], ids[5:12]) })
	n.After(80*time.Millisecond, func() { n.Crash(ids[3]) })
	n.After(120*time.Millisecond, func() { n.Heal(); n.Restart(ids[3], nil) })
	n.After(130*time.Millisecond, func() { n.CutRandomPairs(ids, 0.2) })
	n.RunFor(time.Hour)
	fmt.Fprintf(h, "%+v\n", n.Stats())
	return fmt.Sprintf("%x", h.Sum(nil)), count
}

func TestSameSeedSameTrace(t *testing.T) {
	a, na := scenario(42)
	b, nb := scenario(42)
	if a != b || na != nb {
		t.Fatalf("seed 42 gave two traces: %s (%d deliveries) and %s (%d)", a, na, b, nb)
	}
	if na < 500 {
		t.Fatalf("only %d deliveries; the scenario is too quiet to test anything", na)
	}
	c, _ := scenario(43)
	if a == c {
		t.Fatal("seeds 42 and 43 gave the same trace")
	}
}

func TestLatencyBounds(t *testing.T) {
	const lo, hi = 3 * time.Millisecond, 7 * time.Millisecond
	n := New(Config{Seed: 1, MinLatency: lo, MaxLatency: hi})
	ids := nodes(2)
	log := recorder(n, ids)
	for i := range 2000 {
		n.At(defaultStart.Add(time.Duration(i)*time.Microsecond), func() {
			n.Send(ids[0], ids[1], n.Now().Sub(defaultStart))
		})
	}
	drain(n)
	if len(*log) != 2000 {
		t.Fatalf("%d deliveries, want 2000", len(*log))
	}
	minSeen, maxSeen := time.Hour, time.Duration(0)
	for _, d := range *log {
		lat := d.at - d.msg.(time.Duration)
		if lat < lo || lat > hi {
			t.Fatalf("latency %v outside [%v, %v]", lat, lo, hi)
		}
		minSeen, maxSeen = min(minSeen, lat), max(maxSeen, lat)
	}
	if minSeen > lo+100*time.Microsecond || maxSeen < hi-100*time.Microsecond {
		t.Errorf("latencies span [%v, %v], want close to [%v, %v]", minSeen, maxSeen, lo, hi)
	}
}

func TestZeroLatencyIsAsynchronousAndOrdered(t *testing.T) {
	n := New(Config{})
	ids := nodes(2)
	log := recorder(n, ids)
	for i := range 100 {
		n.Send(ids[0], ids[1], i)
		if len(*log) != 0 {
			t.Fatal("handler ran inside Send")
		}
	}
	drain(n)
	for i, d := range *log {
		if d.msg != i || d.at != 0 {
			t.Fatalf("delivery %d = %v at %v, want %d at 0", i, d.msg, d.at, i)
		}
	}
}

func TestFixedLatencyIsFIFO(t *testing.T) {
	n := New(Config{Seed: 3, MinLatency: time.Millisecond, MaxLatency: time.Millisecond})
	ids := nodes(2)
	log := recorder(n, ids)
	for i := range 1000 {
		n.Send(ids[0], ids[1], i)
	}
	drain(n)
	for i, d := range *log {
		if d.msg != i {
			t.Fatalf("delivery %d carries %v: reordered without jitter", i, d.msg)
		}
	}
}

func TestJitterReorders(t *testing.T) {
	n := New(Config{Seed: 3, MinLatency: time.Millisecond, MaxLatency: 10 * time.Millisecond})
	ids := nodes(2)
	log := recorder(n, ids)
	for i := range 1000 {
		n.At(defaultStart.Add(time.Duration(i)*100*time.Microsecond), func() { n.Send(ids[0], ids[1], i) })
	}
	drain(n)
	inversions := 0
	for i := 1; i < len(*log); i++ {
		if (*log)[i].msg.(int) < (*log)[i-1].msg.(int) {
			inversions++
		}
	}
	if inversions < 100 {
		t.Fatalf("%d adjacent inversions in 1000 messages; jitter should reorder many", inversions)
	}
}

func TestLoss(t *testing.T) {
	const p, total = 0.2, 10000
	n := New(Config{Seed: 7, Loss: p, MaxLatency: time.Millisecond})
	ids := nodes(2)
	log := recorder(n, ids)
	for i := range total {
		n.Send(ids[0], ids[1], i)
	}
	drain(n)
	s := n.Stats()
	// The standard deviation is sqrt(10000*0.2*0.8) = 40; allow 5 of them.
	if s.Dropped < total*p-200 || s.Dropped > total*p+200 {
		t.Fatalf("dropped %d of %d at p=%v", s.Dropped, total, p)
	}
	if s.Sent != total || s.Delivered+s.Dropped != total || uint64(len(*log)) != s.Delivered {
		t.Fatalf("stats %+v with %d deliveries do not add up", s, len(*log))
	}
}

func TestDuplicate(t *testing.T) {
	const p, total = 0.3, 10000
	n := New(Config{Seed: 9, Duplicate: p, MaxLatency: 5 * time.Millisecond})
	ids := nodes(2)
	log := recorder(n, ids)
	for i := range total {
		n.Send(ids[0], ids[1], i)
	}
	drain(n)
	s := n.Stats()
	if s.Duplicated < total*p-250 || s.Duplicated > total*p+250 {
		t.Fatalf("duplicated %d of %d at p=%v", s.Duplicated, total, p)
	}
	seen := make(map[int]int)
	for _, d := range *log {
		seen[d.msg.(int)]++
	}
	twice := 0
	for i := range total {
		switch seen[i] {
		case 1:
		case 2:
			twice++
		default:
			t.Fatalf("message %d delivered %d times", i, seen[i])
		}
	}
	if uint64(twice) != s.Duplicated || s.Delivered != total+s.Duplicated {
		t.Fatalf("%d messages seen twice, stats %+v", twice, s)
	}
}

func TestRunUntilAndClock(t *testing.T) {
	start := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	n := New(Config{Start: start})
	if !n.Now().Equal(start) {
		t.Fatalf("Now() = %v, want %v", n.Now(), start)
	}
	var got []string
	n.After(2*time.Second, func() { got = append(got, "b") })
	n.After(time.Second, func() { got = append(got, "a1") })
	n.After(time.Second, func() {
		got = append(got, "a2")
		n.At(start, func() { got = append(got, "past") }) // in the past: runs now, after a3
	})
	n.After(time.Second, func() { got = append(got, "a3") })
	n.RunUntil(start.Add(time.Second))
	if want := []string{"a1", "a2", "a3", "past"}; !slices.Equal(got, want) {
		t.Fatalf("ran %v, want %v", got, want)
	}
	if !n.Now().Equal(start.Add(time.Second)) || n.Pending() != 1 {
		t.Fatalf("after RunUntil: Now() = %v, Pending() = %d", n.Now(), n.Pending())
	}
	n.RunFor(500 * time.Millisecond)
	if !n.Now().Equal(start.Add(1500*time.Millisecond)) || len(got) != 4 {
		t.Fatalf("after RunFor: Now() = %v, ran %v", n.Now(), got)
	}
	n.RunUntil(start) // the clock does not go back
	if !n.Now().Equal(start.Add(1500 * time.Millisecond)) {
		t.Fatalf("clock went back to %v", n.Now())
	}
	if !n.Step() || got[4] != "b" || !n.Now().Equal(start.Add(2*time.Second)) || n.Step() {
		t.Fatalf("Step: ran %v, Now() = %v", got, n.Now())
	}
}

func TestStatsAddUp(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Loss, cfg.Duplicate = 0.1, 0.1
	n := New(cfg)
	ids := nodes(10)
	recorder(n, ids)
	n.Cut(ids[0], ids[1])
	n.Partition(ids[:3])
	n.Crash(ids[9])
	for i := range 5000 {
		n.Send(ids[i%10], ids[(i/10)%10], i)
		if i == 2500 {
			n.Heal()
			n.Restart(ids[9], nil)
			n.Crash(ids[8])
		}
	}
	drain(n)
	s := n.Stats()
	if s.Sent+s.Duplicated != s.Delivered+s.Dropped+s.Blocked {
		t.Fatalf("stats do not add up: %+v", s)
	}
	if s.Blocked == 0 || s.Dropped == 0 || s.Duplicated == 0 {
		t.Fatalf("some fault never fired: %+v", s)
	}
}
