package kv

import "testing"

// A conditional write that fails its condition is reported as a mismatch
// only when the recent-writes window proves this request never applied.
func TestMayHaveApplied(t *testing.T) {
	var st State
	for i := 0; i < maxRecent+10; i++ {
		st = st.next("r"+string(rune('a'+i%26))+string(rune('A'+i/26)), []byte("v"), false)
	}
	r := &replica{}
	oldest := st.Recent[0].Ver
	v := oldest - 5
	if !r.mayHaveApplied(st, opReq{IfVersion: &v}) {
		t.Fatalf("CAS expecting %d (window from %d) must be ambiguous", v, oldest)
	}
	v = st.Version - 3
	if r.mayHaveApplied(st, opReq{IfVersion: &v}) {
		t.Fatalf("CAS expecting %d is inside the window: a definite mismatch", v)
	}
	if !r.mayHaveApplied(st, opReq{IfAbsent: true}) {
		t.Fatalf("create-only on a key born at %d, window from %d, must be ambiguous", st.Born, oldest)
	}
	fresh := State{}.next("x", []byte("v"), false)
	if r.mayHaveApplied(fresh, opReq{IfAbsent: true}) {
		t.Fatalf("a short window covers everything")
	}
}
