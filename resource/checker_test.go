package resource

import (
	"strings"
	"testing"
	"time"
)

// TestCheckerCatches feeds the checker forged histories: it must be able
// to fail.
func TestCheckerCatches(t *testing.T) {
	t0 := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	g := func(tok uint64, seq uint64, start, until, end float64) *grantEv {
		return &grantEv{Res: "r", Token: tok, Holder: "h", Start: at(start), Seq: seq, FenceOK: true, Until: at(until), End: at(end), How: "released"}
	}
	act := func(gr *grantEv, issued float64, seq uint64, ok bool) *actionEv {
		return &actionEv{Res: gr.Res, Token: gr.Token, Issued: at(issued), Seq: seq, Accepted: ok, grant: gr}
	}
	clean1, clean2 := g(1, 1, 0, 10, 5), g(2, 3, 6, 16, 20)
	cases := []struct {
		name   string
		grants []*grantEv
		acts   []*actionEv
		want   string // "" for a clean history
	}{
		{"clean", []*grantEv{clean1, clean2}, []*actionEv{act(clean1, 1, 2, true), act(clean1, 4, 4, false), act(clean2, 7, 5, true)}, ""},
		{"overlap", []*grantEv{g(1, 1, 0, 10, 12), g(2, 2, 9, 20, 20)}, nil, "two valid leases at once"},
		{"overlap inside", []*grantEv{g(1, 1, 0, 30, 30), g(2, 2, 10, 12, 12), g(3, 3, 20, 25, 25)}, nil, "two valid leases at once"},
		{"token goes down", []*grantEv{g(2, 1, 0, 5, 5), g(1, 2, 6, 10, 10)}, nil, "tokens must grow"},
		{"fence refused", []*grantEv{{Res: "r", Token: 1, Start: at(0), Until: at(1), FenceOK: false}}, nil, "refused its fence"},
		{"stale accepted", []*grantEv{clean1, clean2}, []*actionEv{act(clean1, 4, 4, true)}, "superseded token 1"},
		{"accepted out of order", []*grantEv{g(1, 1, 0, 5, 5)}, []*actionEv{{Res: "r", Token: 3, Seq: 2, Accepted: true}, {Res: "r", Token: 2, Seq: 3, Accepted: true}}, "accepted superseded token 2 after token 3"},
		{"refused current", []*grantEv{clean1}, []*actionEv{act(clean1, 1, 2, false)}, "refused token 1"},
		{"acted after expiry", []*grantEv{clean1}, []*actionEv{act(clean1, 5.5, 2, true)}, "outside its lease"},
	}
	for _, tc := range cases {
		r := check(tc.grants, tc.acts)
		got := strings.Join(r.Violations, "\n")
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: violations %q, want %q", tc.name, got, tc.want)
		}
	}
}
