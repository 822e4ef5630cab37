package saga

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// TestRandomCrashes runs several sagas at once while nodes crash at random
// moments (not only at boundaries) and restart, one at a time, and checks
// every run against the model.
func TestRandomCrashes(t *testing.T) {
	for i := range 3 {
		seed := baseSeed() + 500 + int64(i)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// Steps take 1-ish s, so crashes land inside them too.
				e := newEnvModel(t, seed, 5, &model{runs: map[string]*effects{}, delay: 700 * time.Millisecond}, nil)
				defer e.c.Close()
				const runs, crashes = 8, 6
				started := 0
				start := func() {
					name := "trip"
					if started%2 == 1 {
						name = "trip-fail"
					}
					if err := sagasOf(e.c.Any()).Start(context.Background(), name, fmt.Sprintf("r%d-%d", seed, started), nil); err != nil {
						t.Fatalf("seed %d: Start: %v", seed, err)
					}
					started++
				}
				for i := range crashes {
					for started < (i+1)*runs/crashes {
						start()
					}
					time.Sleep(time.Duration(e.c.Rng.Intn(3000)) * time.Millisecond)
					m := e.c.Any()
					e.c.Crash(m)
					time.Sleep(time.Duration(e.c.Rng.Intn(8000)) * time.Millisecond)
					e.c.Restart(m)
				}
				for started < runs {
					start()
				}
				var dupDo, dupUndo, unapplied int
				for j := range runs {
					runID := fmt.Sprintf("r%d-%d", seed, j)
					st := e.wait(runID, 5*time.Minute)
					failAt := -1
					if j%2 == 1 {
						failAt = 2
					}
					a, b, c := e.check(runID, st, failAt)
					dupDo, dupUndo, unapplied = dupDo+a, dupUndo+b, unapplied+c
				}
				t.Logf("seed %d: %d runs ended done or undone through %d crashes; actions run twice %d, undos run twice %d, undos of never-applied actions %d", seed, runs, crashes, dupDo, dupUndo, unapplied)
			})
		})
	}
}
