package ring

import "github.com/shoal-p2p/shoal/id"

// table is Pastry's prefix routing table: row r holds, for each digit d other
// than self's digit r, one node sharing exactly r leading digits with self
// and having digit d at position r. Rows are allocated lazily.
type table struct {
	self id.ID
	rows [][16]id.ID
	has  [][16]bool
	n    int
}

func newTable(self id.ID) table { return table{self: self} }

// slot returns the row and column where x belongs, or ok=false for self.
func (t *table) slot(x id.ID) (r, d int, ok bool) {
	r = id.CommonPrefix(t.self, x)
	if r >= id.Digits {
		return 0, 0, false
	}
	return r, x.Digit(r), true
}

// insert puts x in its slot if the slot is empty. It reports whether x was added.
func (t *table) insert(x id.ID) bool {
	r, d, ok := t.slot(x)
	if !ok {
		return false
	}
	for len(t.rows) <= r {
		t.rows = append(t.rows, [16]id.ID{})
		t.has = append(t.has, [16]bool{})
	}
	if t.has[r][d] {
		return false
	}
	t.rows[r][d] = x
	t.has[r][d] = true
	t.n++
	return true
}

// remove clears x's slot if x occupies it.
func (t *table) remove(x id.ID) bool {
	r, d, ok := t.slot(x)
	if !ok || r >= len(t.rows) || !t.has[r][d] || t.rows[r][d] != x {
		return false
	}
	t.has[r][d] = false
	t.rows[r][d] = id.ID{}
	t.n--
	return true
}

// get returns the entry at row r, digit d.
func (t *table) get(r, d int) (id.ID, bool) {
	if r >= len(t.rows) || !t.has[r][d] {
		return id.ID{}, false
	}
	return t.rows[r][d], true
}

// row returns the entries of row r (none for a row out of range, which a
// peer's RowReq may name).
func (t *table) row(r int) []id.ID {
	if r < 0 || r >= len(t.rows) {
		return nil
	}
	var out []id.ID
	for d := 0; d < 16; d++ {
		if t.has[r][d] {
			out = append(out, t.rows[r][d])
		}
	}
	return out
}

// all returns every entry.
func (t *table) all() []id.ID {
	out := make([]id.ID, 0, t.n)
	for r := range t.rows {
		for d := 0; d < 16; d++ {
			if t.has[r][d] {
				out = append(out, t.rows[r][d])
			}
		}
	}
	return out
}

// filledRows lists the rows that hold at least one entry.
func (t *table) filledRows() []int {
	var out []int
	for r := range t.rows {
		for d := 0; d < 16; d++ {
			if t.has[r][d] {
				out = append(out, r)
				break
			}
		}
	}
	return out
}
