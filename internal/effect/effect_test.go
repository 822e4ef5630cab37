package effect

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-p2p/shoal/internal/testring"
	"github.com/shoal-p2p/shoal/taskq"
)

// TestApplyOnce: the first run of a task applies its effect, later runs
// only count as raw duplicates, durably, from any node.
func TestApplyOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testring.New(t, testring.Options{Seed: 9, Nodes: 3})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a, b := New(c.Live()[0].KV), New(c.Live()[1].KV)
		task := taskq.Task{ID: "t1", Queue: "q", Attempt: 1}
		if first, err := a.Apply(ctx, task); err != nil || !first {
			t.Fatalf("first apply: %v %v", first, err)
		}
		task.Attempt = 2
		if first, err := b.Apply(ctx, task); err != nil || first {
			t.Fatalf("second apply: %v %v", first, err)
		}
		if first, err := a.Apply(ctx, task); err != nil || first {
			t.Fatalf("third apply: %v %v", first, err)
		}
		rec, _, ok, err := Read(ctx, c.Live()[2].KV, "q", "t1")
		if err != nil || !ok || rec.Runs != 3 || rec.First != 1 {
			t.Fatalf("record %+v ok=%v err=%v, want 3 runs, applied at attempt 1", rec, ok, err)
		}
		if ap, d := a.Counts(); ap != 1 || d != 1 {
			t.Fatalf("node a counted %d applied, %d duplicates", ap, d)
		}
		if _, _, ok, err := Read(ctx, c.Live()[2].KV, "q", "never"); ok || err != nil {
			t.Fatalf("a task never run reads as applied: %v %v", ok, err)
		}
		h := b.Handler(func(context.Context, taskq.Task) error { return errors.New("work failed") })
		if err := h(ctx, taskq.Task{ID: "t2", Queue: "q", Attempt: 1}); err == nil {
			t.Fatal("a handler whose work failed applied its effect")
		}
		if _, _, ok, _ := Read(ctx, c.Live()[0].KV, "q", "t2"); ok {
			t.Fatal("the effect of failed work was recorded")
		}
	})
}
