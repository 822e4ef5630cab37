package taskq

import "container/heap"

// entry is one task in an owner's index. The index is a cache of the kv
// records: every change is a compare-and-set at ver, so a stale entry costs
// a re-read, never a wrong transition.
type entry struct {
	rec taskRec
	ver uint64 // kv version rec was read or written at; 0: unknown, read before use
	gen uint64 // bumped on every change: heap items of older gens are stale
	seq uint64 // arrival order, for FIFO among tasks ready at the same time
}

// item is a heap entry: a task due at a time (not_before for ready tasks,
// lease_until for leased ones). Items are never removed in place; an item
// whose gen no longer matches its entry is skipped when it surfaces.
type item struct {
	at  int64
	seq uint64
	gen uint64
	id  string
}

type itemHeap []item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h itemHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)   { *h = append(*h, x.(item)) }
func (h *itemHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = item{}
	*h = old[:len(old)-1]
	return x
}

func (h *itemHeap) push(it item) { heap.Push(h, it) }
func (h *itemHeap) pop() item    { return heap.Pop(h).(item) }
func (h itemHeap) peek() (item, bool) {
	if len(h) == 0 {
		return item{}, false
	}
	return h[0], true
}
