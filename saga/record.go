package saga

import (
	"encoding/json"
	"fmt"
)

// The states of a run.
const (
	StateRunning      = "running"      // doing steps forward
	StateCompensating = "compensating" // a step failed: undoing the applied steps in reverse
	StateDone         = "done"         // every step's action applied
	StateUndone       = "undone"       // every applied step undone
	StateFailed       = "failed"       // an Undo gave up (UndoAttempts): needs a person
)

// keyPrefix is where runs live in the store: "saga/<id>", with no hash tag,
// so runs spread over the ring and each is run by its key's owner.
const keyPrefix = "saga/"

func keyOf(id string) string { return keyPrefix + id }

// record is a run as stored under saga/<id>. Every change is a
// compare-and-set at the version read.
//
// Step counts the steps whose actions are, or may be, applied. In state
// running it is also the index of the next step to do; in state
// compensating the next step to undo is Step-1; done has Step = Steps and
// undone has Step = 0.
type record struct {
	Saga  string `json:"saga"`
	Input []byte `json:"input,omitempty"`
	Steps int    `json:"steps"` // the definition's length when started
	State string `json:"state"`
	Step  int    `json:"step"`
	// Begun is Step+1 while a runner may have begun the next step's action
	// (it is written before the action runs). A runner that resumes a run
	// with Begun > Step cannot know whether that action was applied.
	Begun       int    `json:"begun,omitempty"`
	Error       string `json:"error,omitempty"`
	Runner      string `json:"runner,omitempty"` // node ID of the lease holder
	Token       string `json:"token,omitempty"`  // the holder's claim, unique per claim
	RunnerUntil int64  `json:"runner_until,omitempty"`
	Created     int64  `json:"created"` // unix ms
	Updated     int64  `json:"updated"` // unix ms
}

func (r record) terminal() bool {
	return r.State == StateDone || r.State == StateUndone || r.State == StateFailed
}

func (r record) encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // a struct of strings and numbers always marshals
	}
	return b
}

// decodeRecord parses and checks a stored record; anything a peer could
// have written badly is an error, never a panic.
func decodeRecord(b []byte) (record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("saga: bad record: %w", err)
	}
	switch {
	case r.Steps < 1:
		return record{}, fmt.Errorf("saga: bad record: steps %d", r.Steps)
	case r.Step < 0 || r.Step > r.Steps:
		return record{}, fmt.Errorf("saga: bad record: step %d of %d", r.Step, r.Steps)
	}
	switch r.State {
	case StateRunning, StateCompensating, StateDone, StateUndone, StateFailed:
	default:
		return record{}, fmt.Errorf("saga: bad record: state %q", r.State)
	}
	return r, nil
}

// The transitions below are pure: they take the record read (and the
// outcome of the step) and return the record to write.

// afterDo is the record after the action of step r.Step ended. uncertain
// says the action may have been applied although err != nil (an earlier
// runner began it, or an attempt timed out); the step is then undone too.
func (r record) afterDo(err error, uncertain bool) record {
	k := r.Step
	r.Begun = 0
	if err == nil {
		r.Step = k + 1
		if r.Step == r.Steps {
			r.State = StateDone
		}
		return r
	}
	r.State = StateCompensating
	r.Error = fmt.Sprintf("step %d: %v", k, err)
	if uncertain {
		r.Step = k + 1
	}
	if r.Step == 0 {
		r.State = StateUndone
	}
	return r
}

// afterUndo is the record after the undo of step r.Step-1 ended; err is
// non-nil only if the undo gave up.
func (r record) afterUndo(err error) record {
	if err != nil {
		r.State = StateFailed
		msg := fmt.Sprintf("undo of step %d gave up: %v", r.Step-1, err)
		if r.Error != "" {
			msg = r.Error + "; " + msg
		}
		r.Error = msg
		return r
	}
	r.Step--
	if r.Step == 0 {
		r.State = StateUndone
	}
	return r
}

const maxNameLen = 200

// validName: 1 to 200 bytes of [A-Za-z0-9._:@-], so names and IDs fit in
// keys, URLs and logs unescaped.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '_' || c == ':' || c == '@' || c == '-':
		default:
			return false
		}
	}
	return true
}
