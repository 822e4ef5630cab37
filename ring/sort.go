package ring

import "sort"

func sortHops(h []*pendingHop) {
	if len(h) < 2 {
		return
	}
	sort.Slice(h, func(i, j int) bool {
		return h[i].seq < h[j].seq
	})
}
