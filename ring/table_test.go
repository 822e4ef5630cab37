package ring

import (
	"slices"
	"testing"

	"github.com/shoal-p2p/shoal/id"
)

func TestTableSlot(t *testing.T) {
	self := id.MustParse("a3f0000000000000000000000000000000000000")
	tb := newTable(self)
	tests := []struct {
		x      id.ID
		r, d   int
		wantOK bool
	}{
		{self, 0, 0, false},
		{id.MustParse("1000000000000000000000000000000000000000"), 0, 0x1, true},
		{id.MustParse("b000000000000000000000000000000000000000"), 0, 0xb, true},
		{id.MustParse("a000000000000000000000000000000000000000"), 1, 0x0, true},
		{id.MustParse("a3e0000000000000000000000000000000000000"), 2, 0xe, true},
		{id.MustParse("a3f0000000000000000000000000000000000001"), 39, 0x1, true},
	}
	for _, tc := range tests {
		r, d, ok := tb.slot(tc.x)
		if ok != tc.wantOK || (ok && (r != tc.r || d != tc.d)) {
			t.Errorf("slot(%s) = (%d, %d, %v), want (%d, %d, %v)", tc.x, r, d, ok, tc.r, tc.d, tc.wantOK)
		}
	}
}

func TestTableInsertRemove(t *testing.T) {
	self := id.MustParse("a3f0000000000000000000000000000000000000")
	tb := newTable(self)
	b1 := id.MustParse("b100000000000000000000000000000000000000")
	b2 := id.MustParse("b200000000000000000000000000000000000000") // same slot as b1: row 0, digit b
	c := id.MustParse("c000000000000000000000000000000000000000")
	deep := id.MustParse("a3f00000000000000000000000000000000000ff") // row 38

	if tb.insert(self) {
		t.Fatal("self was inserted")
	}
	if !tb.insert(b1) {
		t.Fatal("b1 not inserted into an empty slot")
	}
	if tb.insert(b1) {
		t.Fatal("b1 inserted twice")
	}
	if tb.insert(b2) {
		t.Fatal("b2 replaced b1: a filled slot must keep its entry")
	}
	if !tb.insert(c) || !tb.insert(deep) {
		t.Fatal("insert into empty slots failed")
	}
	if tb.n != 3 {
		t.Fatalf("n = %d, want 3", tb.n)
	}
	if got, ok := tb.get(0, 0xb); !ok || got != b1 {
		t.Fatalf("get(0, b) = %s %v, want b1", got.Short(), ok)
	}
	if _, ok := tb.get(0, 0xa); ok {
		t.Fatal("get(0, a): self's own column holds an entry")
	}
	if _, ok := tb.get(5, 0); ok {
		t.Fatal("get of an unallocated row found an entry")
	}
	if got := tb.row(0); !slices.Equal(got, []id.ID{b1, c}) {
		t.Fatalf("row(0) = %s, want [b1 c] in digit order", shorts(got))
	}
	if got := tb.row(38); !slices.Equal(got, []id.ID{deep}) {
		t.Fatalf("row(38) = %s", shorts(got))
	}
	for _, r := range []int{1, 37, 39, 40, 1000, -1} {
		if got := tb.row(r); len(got) != 0 {
			t.Fatalf("row(%d) = %s, want empty", r, shorts(got))
		}
	}
	if got := tb.filledRows(); !slices.Equal(got, []int{0, 38}) {
		t.Fatalf("filledRows = %v, want [0 38]", got)
	}
	all := tb.all()
	slices.SortFunc(all, id.ID.Cmp)
	if !slices.Equal(all, []id.ID{deep, b1, c}) {
		t.Fatalf("all = %s", shorts(all))
	}

	// remove only clears a slot its own occupant holds.
	if tb.remove(b2) {
		t.Fatal("remove(b2) cleared b1's slot")
	}
	if tb.remove(self) || tb.remove(id.MustParse("a3f1000000000000000000000000000000000000")) {
		t.Fatal("remove of a non-entry reported true")
	}
	if !tb.remove(b1) {
		t.Fatal("remove(b1) failed")
	}
	if tb.remove(b1) {
		t.Fatal("remove(b1) twice")
	}
	if !tb.insert(b2) {
		t.Fatal("b2 not inserted into the freed slot")
	}
	if got, _ := tb.get(0, 0xb); got != b2 {
		t.Fatalf("get(0, b) = %s, want b2", got.Short())
	}
	tb.remove(b2)
	tb.remove(c)
	tb.remove(deep)
	if tb.n != 0 || len(tb.all()) != 0 || len(tb.filledRows()) != 0 {
		t.Fatalf("after removing everything: n=%d all=%s rows=%v", tb.n, shorts(tb.all()), tb.filledRows())
	}
}

// Every entry the table accepts sits where slot says, shares exactly row
// leading digits with self, and has digit d at that row.
func TestTableEntriesMatchTheirSlot(t *testing.T) {
	self := id.MustParse("0123456789abcdef0123456789abcdef01234567")
	tb := newTable(self)
	var accepted []id.ID
	for r := 0; r < id.Digits; r++ {
		for d := 0; d < 16; d++ {
			x := self.WithDigit(r, d)
			if r+1 < id.Digits {
				x = x.WithDigit(r+1, (x.Digit(r+1)+7)%16) // vary the rest
			}
			if tb.insert(x) {
				accepted = append(accepted, x)
			}
		}
	}
	// One per column except self's own digit in each row.
	if want := id.Digits * 15; len(accepted) != want || tb.n != want {
		t.Fatalf("accepted %d (n=%d), want %d", len(accepted), tb.n, want)
	}
	for _, x := range accepted {
		r, d, ok := tb.slot(x)
		if !ok || id.CommonPrefix(self, x) != r || x.Digit(r) != d || d == self.Digit(r) {
			t.Fatalf("%s in slot (%d, %d)", x, r, d)
		}
		if got, has := tb.get(r, d); !has || got != x {
			t.Fatalf("get(%d, %d) = %s, want %s", r, d, got, x)
		}
	}
}
