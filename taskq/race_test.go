//go:build race

package taskq

// The size of TestFaults under the race detector, which slows the ring
// several times over (norace_test.go has the full one).
const (
	faultTasks  = 500
	faultQueues = 1
	lossyTasks  = 150
)
