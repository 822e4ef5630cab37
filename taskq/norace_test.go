//go:build !race

package taskq

// The size of TestFaults without the race detector (race_test.go has the
// smaller one): 10,000 tasks in one queue, so every owner crash is the
// crash of that queue's owner or of one of its replicas' peers.
const (
	faultTasks  = 10000
	faultQueues = 1
	lossyTasks  = 300
)
