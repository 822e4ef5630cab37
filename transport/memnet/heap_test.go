package memnet

import (
	"math"
	"math/rand"
	"slices"
	"testing"
	"time"
)

// The heap pops in (at, seq) order under any mix of pushes and pops.
func TestHeapOrder(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	var h eventHeap
	var model []event
	seq := uint64(0)
	now := int64(0) // like the clock: pushes are never earlier than the last pop
	for range 5000 {
		if r.Intn(3) > 0 || h.len() == 0 {
			seq++
			ev := event{at: now + int64(r.Intn(50)), seq: seq}
			h.push(ev)
			model = append(model, ev)
			continue
		}
		slices.SortFunc(model, func(a, b event) int {
			if a.before(&b) {
				return -1
			}
			return 1
		})
		got := h.pop()
		if got.at != model[0].at || got.seq != model[0].seq {
			t.Fatalf("pop = (%d, %d), want (%d, %d)", got.at, got.seq, model[0].at, model[0].seq)
		}
		model = model[1:]
		now = got.at
		if h.len() != len(model) {
			t.Fatalf("len = %d, want %d", h.len(), len(model))
		}
	}
}

func TestAfterSaturates(t *testing.T) {
	n := New(Config{})
	ran := false
	n.After(time.Hour, func() {
		n.After(math.MaxInt64, func() { ran = true })
	})
	n.RunFor(2 * time.Hour)
	if ran || n.Pending() != 1 {
		t.Fatalf("After(MaxInt64) ran = %v, pending = %d", ran, n.Pending())
	}
}
