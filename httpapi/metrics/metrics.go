// Package metrics serves a node's counters over its HTTP API in the
// Prometheus text format:
//
//	GET /metrics   the node's runtime, service host, transport, store and
//	               pub/sub counters, plus the Go runtime's and the process's
//
// Each subsystem already keeps its counters in a stats struct (node.Metrics,
// service.Stats, p2p.Stats, kv.LogStats, pubsub.Stats); a Source names one
// and how to read it, and every scrape reads them afresh. A field becomes
// one metric, shoal_<subsystem>_<field>: unsigned fields are counters (with
// the _total suffix), signed ones gauges. The field name is its JSON name,
// or its Go name in snake case. A map of structs keyed by name (the host's
// per-service stats) becomes metrics labelled with the key; a map of
// counters keyed by name (refusals per resource) becomes one labelled
// counter. (shoal_host_services_handled_total{service="kv"}, say.) Other maps (per-topic detail) are left out: one series per topic
// would not stay bounded.
package metrics

import (
	"net/http"
	"reflect"
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shoal-p2p/shoal/httpapi"
)

// Namespace prefixes every metric of this package.
const Namespace = "shoal"

// Source is one subsystem's counters.
type Source struct {
	// Subsystem is the metric names' middle part, e.g. "kv_log".
	Subsystem string
	// Read returns the subsystem's stats struct (or a pointer to one). It
	// is called on every scrape and must be safe to call at any time.
	Read func() any
	// Labels names the label of each map field, by the field's metric
	// name (for the host: "services" → "service"). Default "name".
	Labels map[string]string
}

// Handler returns the /metrics handler for the sources, with the Go
// runtime's and the process's collectors. Each call has its own registry,
// so several nodes in one process each serve their own.
func Handler(sources ...Source) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&structs{sources: sources})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Register serves Handler(sources...) at GET /metrics on api.
func Register(api *httpapi.Server, sources ...Source) {
	h := Handler(sources...)
	api.Handle("GET /metrics", h.ServeHTTP)
}

// structs collects the sources' stats structs. It is an unchecked
// collector (Describe sends nothing): the metrics follow the structs'
// fields, which the registry need not know in advance.
type structs struct {
	sources []Source
}

func (c *structs) Describe(chan<- *prometheus.Desc) {}

func (c *structs) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.sources {
		emit(ch, s, reflect.ValueOf(s.Read()), "", nil)
	}
}

// emit sends one metric per numeric field of v (a struct or a pointer to
// one), under s's subsystem, with the label pair (label, lv) if lv is set.
func emit(ch chan<- prometheus.Metric, s Source, v reflect.Value, label string, lv []string) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	var labels []string
	if lv != nil {
		labels = []string{label}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		name := fieldName(f)
		help := t.String() + "." + f.Name
		switch fv.Kind() {
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(prometheus.BuildFQName(Namespace, s.Subsystem, name+"_total"), help, labels, nil),
				prometheus.CounterValue, float64(fv.Uint()), lv...)
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(prometheus.BuildFQName(Namespace, s.Subsystem, name), help, labels, nil),
				prometheus.GaugeValue, float64(fv.Int()), lv...)
		case reflect.Map:
			if lv != nil || fv.Type().Key().Kind() != reflect.String {
				continue // one level of labels only
			}
			l := s.Labels[name]
			if l == "" {
				l = "name"
			}
			emitMap(ch, s, l, name, help, fv)
		}
	}
}

// emitMap turns a map keyed by name into labelled metrics: a map of
// structs gives each key's fields; a map of unsigned counters gives one
// counter per key. Other maps are skipped.
func emitMap(ch chan<- prometheus.Metric, s Source, label, name, help string, m reflect.Value) {
	elem := m.Type().Elem()
	switch elem.Kind() {
	case reflect.Struct:
		// The map's name goes into the metric names: the struct's fields
		// may share names with the outer struct's (the host counts
		// "expired" requests overall and per service).
		inner := s
		inner.Subsystem = s.Subsystem + "_" + name
		for _, k := range m.MapKeys() {
			emit(ch, inner, m.MapIndex(k), label, []string{k.String()})
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		desc := prometheus.NewDesc(prometheus.BuildFQName(Namespace, s.Subsystem, name+"_total"), help, []string{label}, nil)
		for _, k := range m.MapKeys() {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(m.MapIndex(k).Uint()), k.String())
		}
	}
}

// fieldName is a field's JSON name, or its Go name in snake case.
func fieldName(f reflect.StructField) string {
	if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag != "" && tag != "-" {
		return tag
	}
	var b strings.Builder
	rs := []rune(f.Name)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
