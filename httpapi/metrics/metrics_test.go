package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/pubsub"
	"github.com/shoal-p2p/shoal/service"
	"github.com/shoal-p2p/shoal/transport/p2p"
)

type perService struct {
	Handled uint64 `json:"handled"`
	Queued  int    `json:"queued"`
	Expired uint64 `json:"expired"` // also a top-level field: no clash
}

type fakeStats struct {
	FramesIn  uint64                // no JSON name: frames_in
	TornBytes int64                 // a gauge
	Sent      uint64                `json:"wire_sent"`
	Expired   uint64                `json:"expired"`
	Services  map[string]perService `json:"services"`
	Refused   map[string]uint64     `json:"refused"`
	Topics    map[string]int        `json:"topics"` // left out: one series per topic
	hidden    uint64
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// Every numeric field becomes a metric named after it, counters with
// _total; maps of structs and of counters become labelled series; other
// maps and unexported fields are left out; every scrape reads afresh.
func TestMetricsFromStructs(t *testing.T) {
	var frames atomic.Uint64
	read := func() any {
		return &fakeStats{FramesIn: frames.Load(), TornBytes: -3, Sent: 7, Expired: 1,
			Services: map[string]perService{"kv": {Handled: 5, Queued: 2, Expired: 3}},
			Refused:  map[string]uint64{"disk": 4},
			Topics:   map[string]int{"news": 1}, hidden: 9}
	}
	h := Handler(Source{Subsystem: "test", Read: read, Labels: map[string]string{"services": "service", "refused": "resource"}})
	frames.Store(11)
	body := scrape(t, h)
	for _, want := range []string{
		"shoal_test_frames_in_total 11\n",
		"shoal_test_torn_bytes -3\n",
		"shoal_test_wire_sent_total 7\n",
		"shoal_test_expired_total 1\n",
		`shoal_test_services_expired_total{service="kv"} 3` + "\n",
		`shoal_test_services_handled_total{service="kv"} 5` + "\n",
		`shoal_test_services_queued{service="kv"} 2` + "\n",
		`shoal_test_refused_total{resource="disk"} 4` + "\n",
		"# TYPE shoal_test_frames_in_total counter\n",
		"# TYPE shoal_test_torn_bytes gauge\n",
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in:\n%s", want, body)
		}
	}
	for _, unwanted := range []string{"topics", "hidden", "news"} {
		if strings.Contains(body, unwanted) {
			t.Errorf("%q should be left out:\n%s", unwanted, body)
		}
	}
	frames.Store(12)
	if body := scrape(t, h); !strings.Contains(body, "shoal_test_frames_in_total 12\n") {
		t.Errorf("second scrape does not read afresh:\n%s", body)
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{
		"FramesIn": "frames_in", "DialFailures": "dial_failures", "TornBytes": "torn_bytes",
		"Groups": "groups", "HTTPRequests": "http_requests", "ID": "id",
	} {
		if got := fieldName(reflect.StructField{Name: in}); got != want {
			t.Errorf("fieldName(%s) = %q, want %q", in, got, want)
		}
	}
	if got := fieldName(reflect.StructField{Name: "Overloaded", Tag: `json:"anycast_overloaded"`}); got != "anycast_overloaded" {
		t.Errorf("a JSON name wins: got %q", got)
	}
}

// The stats structs shoal node serves gather without clashes (a name with
// two label sets would be dropped from the scrape).
func TestShoalStatsGather(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&structs{sources: []Source{
		{Subsystem: "node", Read: func() any { return node.Metrics{FramesIn: 1} }},
		{Subsystem: "host", Read: func() any {
			return service.Stats{Expired: 1, Refused: map[string]uint64{"disk": 1}, Services: map[string]service.ServiceStats{"kv": {Expired: 2}}}
		}, Labels: map[string]string{"services": "service", "refused_by_resource": "resource"}},
		{Subsystem: "p2p", Read: func() any { return p2p.Stats{FramesOut: 1} }},
		{Subsystem: "kv_log", Read: func() any { return kv.LogStats{Groups: 1} }},
		{Subsystem: "pubsub", Read: func() any {
			return pubsub.Stats{Delivered: 1, Forwarders: map[string]int{"t": 1}, Subscriptions: map[string]int{"t": 1}}
		}},
	}})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"shoal_node_frames_in_total", "shoal_host_expired_total", "shoal_host_services_expired_total",
		"shoal_host_refused_by_resource_total", "shoal_p2p_frames_out_total", "shoal_kv_log_groups_total", "shoal_kv_log_torn_bytes",
		"shoal_pubsub_delivered_total", "shoal_pubsub_topics"} {
		if !names[want] {
			t.Errorf("no %s among %v", want, names)
		}
	}
}
