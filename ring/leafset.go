package ring

import (
	"github.com/shoal-p2p/shoal/id"
)

// leafSet holds the nodes numerically nearest to self: up to half on each
// side. right is clockwise (increasing IDs, wrapping), left counter-clockwise,
// both sorted nearest first. In a ring smaller than the leaf set, one node can
// sit on both sides; a side that is not full means this node believes it
// knows every node in the ring.
type leafSet struct {
	self  id.ID
	half  int
	left  []id.ID
	right []id.ID
}

func newLeafSet(self id.ID, size int) leafSet {
	return leafSet{self: self, half: size / 2, left: make([]id.ID, 0, size/2+1), right: make([]id.ID, 0, size/2+1)}
}

// insertSide puts x in list (sorted by dist, nearest first) if it is among
// the nearest half. It reports whether the list changed; evicted is the node
// pushed out, if any.
func insertSide(list []id.ID, half int, x id.ID, dist func(id.ID) id.ID) ([]id.ID, bool, id.ID, bool) {
	dx := dist(x)
	pos := len(list)
	for i, y := range list {
		if y == x {
			return list, false, id.ID{}, false
		}
		if dx.Less(dist(y)) && pos == len(list) {
			pos = i
		}
	}
	if pos >= half {
		return list, false, id.ID{}, false
	}
	list = append(list, id.ID{})
	copy(list[pos+1:], list[pos:])
	list[pos] = x
	if len(list) > half {
		ev := list[len(list)-1]
		list = list[:half]
		return list, true, ev, true
	}
	return list, true, id.ID{}, false
}

func removeFrom(list []id.ID, x id.ID) ([]id.ID, bool) {
	for i, y := range list {
		if y == x {
			return append(list[:i], list[i+1:]...), true
		}
	}
	return list, false
}

func (l *leafSet) cw(x id.ID) id.ID  { return x.Sub(l.self) }
func (l *leafSet) ccw(x id.ID) id.ID { return l.self.Sub(x) }

// insert adds x to whichever sides it belongs to. It returns whether the
// leaf set changed and the nodes evicted from it entirely.
func (l *leafSet) insert(x id.ID) (changed bool, evicted []id.ID) {
	if x == l.self {
		return false, nil
	}
	var c1, c2, e1, e2 bool
	var ev1, ev2 id.ID
	l.right, c1, ev1, e1 = insertSide(l.right, l.half, x, l.cw)
	l.left, c2, ev2, e2 = insertSide(l.left, l.half, x, l.ccw)
	if e1 && !l.contains(ev1) {
		evicted = append(evicted, ev1)
	}
	if e2 && !(e1 && ev2 == ev1) && !l.contains(ev2) {
		evicted = append(evicted, ev2)
	}
	return c1 || c2, evicted
}

// remove deletes x from both sides and reports whether it was present.
func (l *leafSet) remove(x id.ID) bool {
	var a, b bool
	l.right, a = removeFrom(l.right, x)
	l.left, b = removeFrom(l.left, x)
	return a || b
}

func (l *leafSet) contains(x id.ID) bool {
	for _, y := range l.right {
		if y == x {
			return true
		}
	}
	for _, y := range l.left {
		if y == x {
			return true
		}
	}
	return false
}

// full reports whether both sides hold half entries; if not, this node
// believes it knows the whole ring.
func (l *leafSet) full() bool { return len(l.left) >= l.half && len(l.right) >= l.half }

// covers reports whether key lies within the span of the leaf set, so the
// closest leaf (or self) is its owner as far as this node knows.
func (l *leafSet) covers(key id.ID) bool {
	if !l.full() {
		return true
	}
	// Measure each side from self outwards: when the two halves overlap (a
	// ring of LeafSetSize/2+1 to LeafSetSize nodes) their reaches cover the
	// whole circle, which a single lo→hi arc cannot express.
	lo := l.left[len(l.left)-1]
	hi := l.right[len(l.right)-1]
	return l.cw(key).Cmp(l.cw(hi)) <= 0 || l.ccw(key).Cmp(l.ccw(lo)) <= 0
}

// members returns the distinct members, right side first.
func (l *leafSet) members() []id.ID {
	out := make([]id.ID, 0, len(l.left)+len(l.right))
	out = append(out, l.right...)
	for _, x := range l.left {
		dup := false
		for _, y := range l.right {
			if x == y {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, x)
		}
	}
	return out
}

// size is the number of distinct members.
func (l *leafSet) size() int { return len(l.members()) }

// nearestLeft and nearestRight are the immediate neighbours, if any.
func (l *leafSet) nearestLeft() (id.ID, bool) {
	if len(l.left) == 0 {
		return id.ID{}, false
	}
	return l.left[0], true
}

func (l *leafSet) nearestRight() (id.ID, bool) {
	if len(l.right) == 0 {
		return id.ID{}, false
	}
	return l.right[0], true
}

// closest returns the member or self closest to key, skipping members for
// which skip returns true.
func (l *leafSet) closest(key id.ID, skip func(id.ID) bool) id.ID {
	best := l.self
	for _, side := range [2][]id.ID{l.right, l.left} {
		for _, x := range side {
			if skip != nil && skip(x) {
				continue
			}
			if id.Closer(key, x, best) {
				best = x
			}
		}
	}
	return best
}
