package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestBenchKVUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "  kv ") {
		t.Errorf("bench --help: exit %d, does not list kv:\n%s", code, out.String())
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "kv", "--nodes", "2"}, "Nodes must be in [3, 100]"},
		{[]string{"bench", "kv", "--keys", "0"}, "--keys must be >= 1"},
		{[]string{"bench", "kv", "--keys", "2", "--concurrency", "3"}, "Keys (2) must be at least Concurrency (3)"},
		{[]string{"bench", "kv", "--duration", "0s"}, "--duration must be > 0"},
		{[]string{"bench", "kv", "x"}, `unexpected argument "x"`},
	} {
		errb.Reset()
		if code := run(c.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("shoal %q: exit %d, stderr %q; want 2 and %q", c.args, code, errb.String(), c.want)
		}
	}
}
