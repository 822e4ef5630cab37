package memnet

import (
	"testing"
	"time"

	"github.com/shoal-p2p/shoal/id"
)

// BenchmarkSendDeliver measures discrete-event throughput in steady state:
// 10,000 nodes, 10,000 messages in flight, one Send per operation and as many
// events run as keep the number in flight constant. The msgs/s metric is
// handler invocations per second of wall time.
func BenchmarkSendDeliver(b *testing.B) {
	for _, bc := range []struct {
		name  string
		setup func(n *Network, ids []id.ID)
	}{
		{"clean", func(*Network, []id.ID) {}},
		{"faults", func(n *Network, ids []id.ID) {
			n.SetLoss(0.01)
			n.SetDuplicate(0.01)
			n.CutRandomPairs(ids[:1000], 0.05)
			n.Partition(ids[:100])
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const nodeCount, inFlight = 10000, 10000
			n := New(DefaultConfig())
			ids := make([]id.ID, nodeCount)
			for i := range ids {
				ids[i] = id.Hash([]byte{byte(i), byte(i >> 8)})
			}
			delivered := 0
			h := func(id.ID, any) { delivered++ }
			for _, x := range ids {
				n.Attach(x, h)
			}
			bc.setup(n, ids)
			msg := &struct{ hops int }{} // a pointer: converting it to any does not allocate
			for i := range inFlight {
				n.Send(ids[i%nodeCount], ids[(i*7919+1)%nodeCount], msg)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				n.Send(ids[i%nodeCount], ids[(i*7919+13)%nodeCount], msg)
				for n.Pending() >= inFlight { // loss would drain the heap, duplication grow it
					n.Step()
				}
			}
			b.ReportMetric(float64(delivered)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkBurst sends a burst of messages and then runs them all.
func BenchmarkBurst(b *testing.B) {
	n := New(DefaultConfig())
	ids := nodes(1000)
	for _, x := range ids {
		n.Attach(x, nil)
	}
	b.ReportAllocs()
	for b.Loop() {
		for i := range 100000 {
			n.Send(ids[i%1000], ids[(i*31+7)%1000], i&0xff) // small ints do not allocate
		}
		n.RunFor(time.Second)
	}
	b.ReportMetric(float64(100000*b.N)/b.Elapsed().Seconds(), "msgs/s")
}
