package taskq

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/kv"
)

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true}, {"orders.eu-1:high_prio", true}, {strings.Repeat("x", MaxQueueName), true},
		{"", false}, {strings.Repeat("x", MaxQueueName+1), false}, {"a}", false}, {"{a", false},
		{"a/b", false}, {"a b", false}, {"é", false}, {"a\x00", false},
	} {
		err := checkName(tc.name)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadName)) {
			t.Errorf("checkName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestBackoff(t *testing.T) {
	c := QueueConfig{Backoff: time.Second, MaxBackoff: 5 * time.Second}
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 5 * time.Second, 50: 5 * time.Second} {
		if got := c.backoff(attempt); got != want {
			t.Errorf("backoff(%d) = %v, want %v", attempt, got, want)
		}
	}
	if c := (QueueConfig{}).withDefaults(); c != DefaultQueueConfig() || c.Validate() != nil {
		t.Errorf("defaults: %+v %v", c, c.Validate())
	}
	if got := (QueueConfig{Backoff: 2 * time.Minute}).withDefaults(); got.MaxBackoff != 2*time.Minute || got.Validate() != nil {
		t.Errorf("a Backoff over the default MaxBackoff: %+v", got)
	}
}

func TestTaskIDs(t *testing.T) {
	a, b := idemTaskID("q", "k"), idemTaskID("q", "k")
	if a != b || !isTaskID(a) {
		t.Fatalf("idempotent IDs differ or malformed: %q %q", a, b)
	}
	// No ambiguity between (queue, key) splits.
	if idemTaskID("q1", "k") == idemTaskID("q", "1k") || idemTaskID("q", "k") == reqTaskID("q", "k") {
		t.Fatal("task IDs collide across fields or kinds")
	}
	for _, s := range []string{"", "XYZ", strings.Repeat("a", 31), strings.Repeat("A", 32)} {
		if isTaskID(s) {
			t.Errorf("isTaskID(%q) = true", s)
		}
	}
}

// TestMergeSkipsGarbage: records under a queue's prefix that are not task
// records (corrupt, mismatched ID, deleted) do not enter the index.
func TestMergeSkipsGarbage(t *testing.T) {
	q := &Queues{cfg: DefaultConfig()}
	q.log = discard()
	s := newSched(q, "q")
	good := taskRec{ID: idemTaskID("q", "a"), State: stReady, Enqueued: 1}
	gb, _ := jsonMarshal(good)
	other, _ := jsonMarshal(taskRec{ID: idemTaskID("q", "b"), State: stReady})
	items := []kv.LocalItem{
		{Item: kv.Item{Key: taskKey("q", good.ID), Value: gb, Version: 3}},
		{Item: kv.Item{Key: taskKey("q", "x"), Value: []byte("{not json"), Version: 1}},
		{Item: kv.Item{Key: taskKey("q", "y"), Value: other, Version: 1}}, // ID disagrees with key
		{Item: kv.Item{Key: taskKey("q", "z"), Value: []byte("null"), Version: 1}},
		{Item: kv.Item{Key: taskKey("q", "w"), Version: 2}, Deleted: true},
	}
	s.mu.Lock()
	s.merge(items)
	// An older version does not overwrite a newer one.
	old := good
	old.State = stDead
	ob, _ := jsonMarshal(old)
	s.merge([]kv.LocalItem{{Item: kv.Item{Key: taskKey("q", good.ID), Value: ob, Version: 2}}})
	s.mu.Unlock()
	if len(s.tasks) != 1 || s.tasks[good.ID] == nil || s.tasks[good.ID].ver != 3 || s.tasks[good.ID].rec.State != stReady {
		t.Fatalf("index after merge: %+v", s.tasks)
	}
	s.mu.Lock()
	id, ok := s.pickReadyLocked(ms(time.Now()))
	s.mu.Unlock()
	if !ok || id != good.ID {
		t.Fatalf("pick: %q %v", id, ok)
	}
}
