//go:build !race

package taskq

// The size of TestFaults without the race detector (race_test.go has the
// smaller one): 10,000 tasks over 5 queues. Not one queue: the store's
// anti-entropy sends a replicated range in one message (4 MiB frames), and
// a range holding more than about 3,000 records (a task record is about
// 1.3 KiB with the store's metadata) cannot be resynchronised by a
// restarted replica, after which creates there fail for want of
// synchronised replicas. See docs/taskq.md, Limits.
const (
	faultTasks  = 10000
	faultQueues = 5
	lossyTasks  = 300
)
