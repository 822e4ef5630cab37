package pubsub

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// TestLossyNetwork: with 2% of all messages lost (and 1% duplicated), every
// acknowledged publish still reaches every subscriber exactly once, in order:
// holes are asked for (resend from the parent's history), a lost tail is
// noticed through the heartbeat answers, lost acknowledgements are retried.
func TestLossyNetwork(t *testing.T) {
	seeds := []int64{601, 602, 603}
	if raceEnabled {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { lossyRun(t, seed) })
		})
	}
}

func lossyRun(t *testing.T, seed int64) {
	{
		c := newCluster(t, seed, 60, testConfig())
		defer c.close()
		time.Sleep(3 * time.Second)
		c.net.SetLoss(0.02)
		c.net.SetDuplicate(0.01)
		const topic = "lossy"
		subs := subscribeN(t, c, topic, 20)
		want := map[string]uint64{}
		publishN(t, c, topic, "m", 100, want)
		time.Sleep(3 * testConfig().HeartbeatInterval)
		var resent, gaps uint64
		for _, m := range c.members {
			st := m.ps.Stats()
			resent += st.Replayed
			gaps += st.Gaps
		}
		for _, r := range subs {
			if err := checkExactlyOnce(r, want); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
		t.Logf("seed %d: %d messages to %d subscribers with 2%% loss: all delivered; %d replayed from history, %d given up", seed, len(want), len(subs), resent, gaps)
	}
}
