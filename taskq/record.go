package taskq

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/kv"
)

// Storage layout: every key of queue Q starts with the hash tag "{q/Q}", so
// the queue's meta record and all its tasks live at one owner and replica
// set, the owner of kv.KeyID("{q/Q}").
func tag(queue string) string             { return "{q/" + queue + "}" }
func metaKey(queue string) string         { return tag(queue) + "/meta" }
func taskPrefix(queue string) string      { return tag(queue) + "/t/" }
func taskKey(queue, taskID string) string { return taskPrefix(queue) + taskID }

// queueID is the ring position of a queue: its owner serves it.
func queueID(queue string) id.ID { return kv.KeyID(tag(queue)) }

// Task states.
const (
	stReady  = "ready"
	stLeased = "leased"
	stDone   = "done"
	stDead   = "dead"
)

// taskRec is a task as stored in kv (JSON). Times are unix milliseconds of
// the clock of the owner that wrote them.
type taskRec struct {
	ID         string `json:"id"`
	Payload    []byte `json:"payload,omitempty"`
	State      string `json:"state"`
	Attempt    int    `json:"attempt"` // deliveries so far
	NotBefore  int64  `json:"not_before,omitempty"`
	LeaseUntil int64  `json:"lease_until,omitempty"`
	Lease      string `json:"lease,omitempty"` // random per delivery
	Worker     string `json:"worker,omitempty"`
	Enqueued   int64  `json:"enqueued"`
	Finished   int64  `json:"finished,omitempty"` // done or dead at
	LastError  string `json:"last_error,omitempty"`
	// Write is random per write: after an ambiguous compare-and-set the
	// owner reads the key back and knows whether the value is its own.
	Write string `json:"write"`
}

// metaRec is a queue's stored configuration.
type metaRec struct {
	Name    string     `json:"name"`
	Config  wireConfig `json:"config"`
	Created int64      `json:"created"`
}

func ms(t time.Time) int64     { return t.UnixMilli() }
func fromMs(v int64) time.Time { return time.UnixMilli(v) }
func randToken() string {
	return strconv.FormatUint(rand.Uint64(), 36) + strconv.FormatUint(rand.Uint64(), 36)
}
func hashID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(strconv.Itoa(len(p))))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// idemTaskID is the task ID for an idempotency key: the same key in the
// same queue always names the same task.
func idemTaskID(queue, key string) string { return hashID("taskq/idem", queue, key) }

// reqTaskID is the task ID of an enqueue without an idempotency key: derived
// from the request ID, which node.Call keeps across its retries, so a retry
// after a lost answer finds the task it already created.
func reqTaskID(queue, reqID string) string { return hashID("taskq/req", queue, reqID) }

// isTaskID reports whether s looks like a task ID (32 lowercase hex digits).
func isTaskID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// Wire messages of service "taskq".
type (
	createReq struct {
		Queue  string     `json:"queue"`
		Config wireConfig `json:"config"`
	}
	enqueueReq struct {
		Queue   string `json:"queue"`
		Payload []byte `json:"payload"`
		Key     string `json:"key,omitempty"`
		DelayMs int64  `json:"delay_ms,omitempty"`
	}
	enqueueResp struct {
		ID      string `json:"id"`
		Created bool   `json:"created"`
	}
	leaseReq struct {
		Queue  string `json:"queue"`
		Worker string `json:"worker"`
		WaitMs int64  `json:"wait_ms"`
	}
	grant struct {
		ID           string `json:"id"`
		Payload      []byte `json:"payload,omitempty"`
		Attempt      int    `json:"attempt"`
		Enqueued     int64  `json:"enqueued"`
		Lease        string `json:"lease"`
		VisibilityMs int64  `json:"visibility_ms"`
	}
	leaseResp struct {
		Task *grant `json:"task,omitempty"`
	}
	ackReq struct {
		Queue string `json:"queue"`
		ID    string `json:"id"`
		Lease string `json:"lease"`
		Error string `json:"error,omitempty"` // fail only
	}
	queueReq struct {
		Queue string   `json:"queue"`
		IDs   []string `json:"ids,omitempty"` // redrive only
	}
	statsResp struct {
		Ready, Delayed, Leased, Done, Dead int
		Config                             wireConfig
		Owner                              string
	}
	deadResp struct {
		Tasks []deadTask `json:"tasks"`
	}
	deadTask struct {
		ID        string `json:"id"`
		Payload   []byte `json:"payload,omitempty"`
		Attempts  int    `json:"attempts"`
		LastError string `json:"last_error,omitempty"`
		Enqueued  int64  `json:"enqueued"`
		Died      int64  `json:"died"`
	}
	redriveResp struct {
		N int `json:"n"`
	}
)
