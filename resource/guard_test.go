package resource

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestGuard(t *testing.T) {
	g := NewGuard()
	steps := []struct {
		name  string
		token uint64
		ok    bool
	}{
		{"a", 0, false}, // never granted
		{"a", 3, true},
		{"a", 3, true}, // the same holder again
		{"a", 2, false},
		{"b", 1, true}, // resources are independent
		{"a", 5, true},
		{"a", 4, false},
		{"a", 3, false},
	}
	for i, s := range steps {
		err := g.Check("p", s.name, s.token)
		if (err == nil) != s.ok || (err != nil && !errors.Is(err, ErrStaleToken)) {
			t.Fatalf("step %d: Check(%s, %d) = %v, want ok=%v", i, s.name, s.token, err, s.ok)
		}
	}
	if g.Seen("p", "a") != 5 || g.Seen("q", "a") != 0 {
		t.Fatalf("Seen = %d, %d", g.Seen("p", "a"), g.Seen("q", "a"))
	}
}

// TestGuardConcurrent: accepted tokens never go down even when checks race.
func TestGuardConcurrent(t *testing.T) {
	g := NewGuard()
	var mu sync.Mutex
	var accepted []uint64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				tok := uint64(i*8 + w + 1)
				mu.Lock()
				if g.Check("p", "r", tok) == nil {
					accepted = append(accepted, tok)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for i := 1; i < len(accepted); i++ {
		if accepted[i] < accepted[i-1] {
			t.Fatalf("accepted %d after %d", accepted[i], accepted[i-1])
		}
	}
}

// A service guarding a resource with the holders' fencing tokens: a
// holder that paused past its lease is refused once its successor acted.
func ExampleGuard() {
	g := NewGuard()
	fmt.Println(g.Check("ips", "10.0.0.7", 4)) // holder with token 4 configures the address
	fmt.Println(g.Check("ips", "10.0.0.7", 5)) // its lease expired; token 5 took over
	err := g.Check("ips", "10.0.0.7", 4)       // the old holder wakes up
	fmt.Println(errors.Is(err, ErrStaleToken))
	// Output:
	// <nil>
	// <nil>
	// true
}
