package sim

import (
	"fmt"
	"math"
	"time"

	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

// RunConfig describes one simulation run, as `shoal sim` takes it.
type RunConfig struct {
	Nodes       int     // ring size
	Lookups     int     // random lookups issued while the ring runs
	ChurnPerMin float64 // node crashes per virtual minute, each followed by a join; 0 for none
	Seed        int64
	// LookupRate is lookups issued per virtual second. Default 2000.
	LookupRate float64
	// Ring and Net tune the core and the simulated network. Zero values mean
	// ring.DefaultConfig() and memnet.DefaultConfig().
	Ring ring.Config
	Net  memnet.Config
	// Progress, if set, receives a line of progress now and then.
	Progress func(string)
}

// Result is what `shoal sim --json` prints.
type Result struct {
	Nodes            int     `json:"nodes"`
	Lookups          int     `json:"lookups"`
	ChurnPerMin      float64 `json:"churn_per_min"`
	Seed             int64   `json:"seed"`
	AvgHops          float64 `json:"avg_hops"`
	P99Hops          int     `json:"p99_hops"`
	Log16N           float64 `json:"log16_n"`
	CorrectPct       float64 `json:"correct_pct"`
	DeliveredPct     float64 `json:"delivered_pct"`
	MsgsPerNodePerS  float64 `json:"msgs_per_node_per_s"`
	Crashes          int     `json:"crashes"`
	AfterRepairPct   float64 `json:"after_repair_correct_pct,omitempty"`
	AfterRepairCount int     `json:"after_repair_lookups,omitempty"`
	VirtualS         float64 `json:"virtual_s"`
	WallS            float64 `json:"wall_s"`
}

// Run builds a ring of cfg.Nodes (routing state filled as if they had joined
// long ago), lets it settle, then issues cfg.Lookups random lookups at
// LookupRate while nodes crash and join at ChurnPerMin, and checks each
// delivery against the true owner. With churn it then stops the churn, waits
// for the repair time and measures again.
func Run(cfg RunConfig) (Result, error) {
	start := time.Now()
	if cfg.Nodes < 1 {
		return Result{}, fmt.Errorf("sim: --nodes must be at least 1, got %d", cfg.Nodes)
	}
	if cfg.Lookups < 0 {
		return Result{}, fmt.Errorf("sim: --lookups must be >= 0, got %d", cfg.Lookups)
	}
	if cfg.ChurnPerMin < 0 {
		return Result{}, fmt.Errorf("sim: --churn must be >= 0, got %v", cfg.ChurnPerMin)
	}
	if cfg.LookupRate == 0 {
		cfg.LookupRate = 2000
	}
	if cfg.Ring.LeafSetSize == 0 {
		cfg.Ring = ring.DefaultConfig()
	}
	if cfg.Net == (memnet.Config{}) {
		cfg.Net = memnet.DefaultConfig()
	}
	progress := cfg.Progress
	if progress == nil {
		progress = func(string) {}
	}
	s, err := New(cfg.Seed, cfg.Ring, cfg.Net)
	if err != nil {
		return Result{}, err
	}
	progress(fmt.Sprintf("building a ring of %d nodes", cfg.Nodes))
	s.Bootstrap(cfg.Nodes)
	s.RunFor(10 * time.Second)
	s.ResetMaintenance()
	s.ResetLookups()

	res := Result{Nodes: cfg.Nodes, Lookups: cfg.Lookups, ChurnPerMin: cfg.ChurnPerMin, Seed: cfg.Seed, Log16N: math.Log(float64(cfg.Nodes)) / math.Log(16)}
	gap := time.Duration(float64(time.Second) / cfg.LookupRate)
	var churnGap time.Duration
	nextChurn := s.Now()
	if cfg.ChurnPerMin > 0 {
		churnGap = time.Duration(float64(time.Minute) / cfg.ChurnPerMin)
		nextChurn = s.Now().Add(time.Duration(s.Rand().ExpFloat64() * float64(churnGap)))
	}
	lastReport := time.Now()
	for i := 0; i < cfg.Lookups; i++ {
		for churnGap > 0 && !s.Now().Before(nextChurn) && len(s.Live()) > 1 {
			s.CrashRandom()
			s.Join()
			res.Crashes++
			nextChurn = nextChurn.Add(time.Duration(s.Rand().ExpFloat64() * float64(churnGap)))
		}
		s.RandomLookup()
		s.RunFor(gap)
		if time.Since(lastReport) > 2*time.Second {
			lastReport = time.Now()
			st := s.Lookups()
			progress(fmt.Sprintf("%d/%d lookups issued, %.2f%% correct so far, %d crashes, %.0fs wall", i+1, cfg.Lookups, st.CorrectPct(), res.Crashes, time.Since(start).Seconds()))
		}
	}
	// Let lookups in flight finish (held messages wait at most HoldTimeout).
	s.RunFor(cfg.Ring.HoldTimeout + 15*time.Second)
	// Maintenance is measured over the lookup period and the drain, so even
	// a short run averages over several heartbeat periods.
	res.MsgsPerNodePerS = s.MaintenancePerNodeSec()
	st := s.Lookups()
	res.AvgHops = st.AvgHops()
	res.P99Hops = st.PercentileHops(99)
	res.CorrectPct = st.CorrectPct()
	res.DeliveredPct = st.DeliveredPct()
	if cfg.ChurnPerMin > 0 {
		progress("churn stopped; waiting for the repair time")
		s.RunFor(2 * time.Minute)
		n := cfg.Lookups / 10
		if n < 1000 {
			n = 1000
		}
		s.ResetLookups()
		for i := 0; i < n; i++ {
			s.RandomLookup()
			s.RunFor(gap)
		}
		s.RunFor(cfg.Ring.HoldTimeout + 15*time.Second)
		after := s.Lookups()
		res.AfterRepairPct = after.CorrectPct()
		res.AfterRepairCount = n
	}
	res.VirtualS = s.Now().Sub(s.maintStart).Seconds() + 10
	res.WallS = time.Since(start).Seconds()
	return res, nil
}
