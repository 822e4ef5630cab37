package saga

import (
	"errors"
	"strings"
	"testing"
)

func TestTransitions(t *testing.T) {
	boom := errors.New("boom")
	run := func(step, begun int) record {
		return record{Saga: "s", Steps: 3, State: StateRunning, Step: step, Begun: begun}
	}
	comp := func(step int) record { return record{Saga: "s", Steps: 3, State: StateCompensating, Step: step} }
	for _, tc := range []struct {
		name      string
		got, want record
	}{
		{"do ok", run(0, 1).afterDo(nil, false), run(1, 0)},
		{"do ok, uncertain is irrelevant", run(1, 2).afterDo(nil, true), run(2, 0)},
		{"last do ok", run(2, 3).afterDo(nil, false), record{Saga: "s", Steps: 3, State: StateDone, Step: 3}},
		{"do fails: undo the steps before", run(2, 3).afterDo(boom, false), record{Saga: "s", Steps: 3, State: StateCompensating, Step: 2, Error: "step 2: boom"}},
		{"do fails uncertain: undo it too", run(2, 3).afterDo(boom, true), record{Saga: "s", Steps: 3, State: StateCompensating, Step: 3, Error: "step 2: boom"}},
		{"first do fails: nothing to undo", run(0, 1).afterDo(boom, false), record{Saga: "s", Steps: 3, State: StateUndone, Step: 0, Error: "step 0: boom"}},
		{"first do fails uncertain", run(0, 1).afterDo(boom, true), record{Saga: "s", Steps: 3, State: StateCompensating, Step: 1, Error: "step 0: boom"}},
		{"undo ok", comp(2).afterUndo(nil), comp(1)},
		{"last undo ok", comp(1).afterUndo(nil), record{Saga: "s", Steps: 3, State: StateUndone, Step: 0}},
		{"undo gave up", comp(2).afterUndo(boom), record{Saga: "s", Steps: 3, State: StateFailed, Step: 2, Error: "undo of step 1 gave up: boom"}},
	} {
		if tc.got.encode() == nil || string(tc.got.encode()) != string(tc.want.encode()) {
			t.Errorf("%s: got %+v, want %+v", tc.name, tc.got, tc.want)
		}
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{
		"": false, "a": true, "order-42:eu@v1.2_x": true, "a/b": false, "a b": false,
		"é": false, strings.Repeat("x", 200): true, strings.Repeat("x", 201): false, "a\n": false,
	} {
		if validName(s) != want {
			t.Errorf("validName(%q) = %v, want %v", s, !want, want)
		}
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	for _, b := range []string{
		``, `null`, `{}`, `[]`, `{"steps":0,"state":"running"}`, `{"steps":3,"step":4,"state":"running"}`,
		`{"steps":3,"step":-1,"state":"running"}`, `{"steps":3,"state":"odd"}`, `{"steps":"3"}`,
	} {
		if _, err := decodeRecord([]byte(b)); err == nil {
			t.Errorf("decodeRecord(%s) accepted", b)
		}
	}
	r := record{Saga: "s", Input: []byte{0, 1}, Steps: 2, State: StateCompensating, Step: 1, Runner: "x", RunnerUntil: 1 << 60}
	got, err := decodeRecord(r.encode())
	if err != nil || string(got.encode()) != string(r.encode()) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"saga":"s","steps":3,"state":"running","step":1}`))
	f.Add([]byte(`{"steps":3,"state":"done","step":3,"input":"AAE="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		r2, err := decodeRecord(r.encode())
		if err != nil || string(r2.encode()) != string(r.encode()) {
			t.Fatalf("round trip changed %+v: %+v %v", r, r2, err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.MaxBackoff = c.Backoff / 2
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "MaxBackoff") {
		t.Fatalf("got %v", err)
	}
	if err := (Config{}).withDefaults().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("no funds")
	err := Permanent(base)
	if !errors.Is(err, ErrPermanent) || !errors.Is(err, base) || Permanent(nil) != nil {
		t.Fatalf("Permanent: %v", err)
	}
}
