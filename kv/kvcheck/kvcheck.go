// Package kvcheck is the linearizability model of the key-value store: a
// versioned register per key, for porcupine. The memnet tests of package kv
// and the real-process test share it.
package kvcheck

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// ---- the model: one versioned register per key ----------------------------

// State is a key's register.
type State struct {
	Exists  bool
	Value   string
	Version uint64
}

// Input is an operation's request.
type Input struct {
	Key   string
	Op    string // get, put, cas, create, del, casdel
	Value string
	Want  uint64
}

// Output is an operation's result.
type Output struct {
	Unknown  bool // outcome not known (timeout, unavailable): maybe applied
	Mismatch bool
	Exists   bool
	Value    string
	Version  uint64
}

// Precondition reports whether a write's condition holds in s.
func Precondition(s State, in Input) bool {
	switch in.Op {
	case "cas", "casdel":
		return s.Exists && s.Version == in.Want
	case "create":
		return !s.Exists
	}
	return true
}

// Apply is the state after a write.
func Apply(s State, in Input) State {
	switch in.Op {
	case "put", "cas", "create":
		return State{Exists: true, Value: in.Value, Version: s.Version + 1}
	case "del", "casdel":
		return State{Exists: false, Version: s.Version + 1}
	}
	return s
}

// Model is a versioned register per key, partitioned by key.
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(Input).Key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return State{} },
	Step: func(st, input, output any) (bool, any) {
		s, in, out := st.(State), input.(Input), output.(Output)
		if in.Op == "get" {
			ok := out.Exists == s.Exists && out.Version == s.Version && (!s.Exists || out.Value == s.Value)
			return ok, s
		}
		if out.Unknown {
			if Precondition(s, in) {
				return true, Apply(s, in)
			}
			return true, s
		}
		if out.Mismatch {
			return !Precondition(s, in) && out.Version == s.Version && out.Exists == s.Exists, s
		}
		if !Precondition(s, in) {
			return false, s
		}
		n := Apply(s, in)
		return out.Version == n.Version, n
	},
	Equal: func(a, b any) bool { return a.(State) == b.(State) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(Input), output.(Output)
		switch {
		case out.Unknown:
			return fmt.Sprintf("%s(%s,%q,%d) -> ?", in.Op, in.Key, in.Value, in.Want)
		case in.Op == "get":
			return fmt.Sprintf("get(%s) -> exists=%v %q v%d", in.Key, out.Exists, out.Value, out.Version)
		case out.Mismatch:
			return fmt.Sprintf("%s(%s,%q,%d) -> mismatch v%d", in.Op, in.Key, in.Value, in.Want, out.Version)
		}
		return fmt.Sprintf("%s(%s,%q,%d) -> v%d", in.Op, in.Key, in.Value, in.Want, out.Version)
	},
	DescribeState: func(st any) string {
		s := st.(State)
		return fmt.Sprintf("exists=%v %q v%d", s.Exists, s.Value, s.Version)
	},
}

// ---- the recorder -----------------------------------------------------------

// Recorder collects a history from concurrent clients.
type Recorder struct {
	mu    sync.Mutex
	Ops   []porcupine.Operation
	Start time.Time
}

// Add records one operation; an unknown outcome may take effect at any
// later time, so its return is open-ended.
func (r *Recorder) Add(client int, in Input, call, ret time.Time, out Output) {
	r.mu.Lock()
	defer r.mu.Unlock()
	end := ret.Sub(r.Start).Nanoseconds()
	if out.Unknown {
		end = math.MaxInt64 // may take effect at any later time
	}
	r.Ops = append(r.Ops, porcupine.Operation{ClientId: client, Input: in, Call: call.Sub(r.Start).Nanoseconds(), Output: out, Return: end})
}

// Check checks a history; on failure it writes porcupine's visualization
// and each failing key's history under dir and returns their paths.
func Check(ops []porcupine.Operation, timeout time.Duration, dir string) (porcupine.CheckResult, []string) {
	res, info := porcupine.CheckOperationsVerbose(Model, ops, timeout)
	if res == porcupine.Ok {
		return res, nil
	}
	_ = os.MkdirAll(dir, 0o755)
	var files []string
	f := filepath.Join(dir, "history.html")
	if err := porcupine.VisualizePath(Model, info, f); err == nil {
		files = append(files, f)
	}
	by := map[string][]porcupine.Operation{}
	for _, op := range ops {
		k := op.Input.(Input).Key
		by[k] = append(by[k], op)
	}
	for k, kops := range by {
		if porcupine.CheckOperations(Model, kops) {
			continue
		}
		sort.Slice(kops, func(i, j int) bool { return kops[i].Call < kops[j].Call })
		path := filepath.Join(dir, "key-"+k+".txt")
		out, err := os.Create(path)
		if err != nil {
			continue
		}
		for _, op := range kops {
			ret := "    inf"
			if op.Return != math.MaxInt64 {
				ret = fmt.Sprintf("%7.1f", float64(op.Return)/1e6)
			}
			fmt.Fprintf(out, "%8.1f %s c%-3d %s\n", float64(op.Call)/1e6, ret, op.ClientId, Model.DescribeOperation(op.Input, op.Output))
		}
		out.Close()
		files = append(files, path)
	}
	return res, files
}

// Known counts operations with a known outcome.
func Known(ops []porcupine.Operation) int {
	n := 0
	for _, op := range ops {
		if !op.Output.(Output).Unknown {
			n++
		}
	}
	return n
}
