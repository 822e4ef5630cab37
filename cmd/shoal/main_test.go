package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"sim", "--nodes", "0"}, 2, "--nodes must be at least 1"},
		{[]string{"sim", "--nodes", "x"}, 2, "invalid value"},
		{[]string{"node", "--bootstrap", "/ip4/127.0.0.1/tcp/1"}, 2, "ending in /p2p/<peer-id>"},
		{[]string{"node", "--profile", "fast"}, 2, "--profile must be lan, local or wan"},
		{[]string{"node", "extra"}, 2, "unexpected argument"},
		{[]string{"demo", "--nodes", "1"}, 2, "between 2 and 64"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("shoal %v: exit %d, stderr %q; want exit %d and %q", c.args, code, errb.String(), c.code, c.want)
		}
	}
}

func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, cmd := range []string{"node", "demo", "sim"} {
		if !strings.Contains(out.String(), cmd) {
			t.Errorf("usage does not list %q:\n%s", cmd, out.String())
		}
	}
}

func TestSimJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"sim", "--nodes", "50", "--lookups", "200", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("not one JSON line: %v\n%s", err, out.String())
	}
	for _, k := range []string{"nodes", "lookups", "avg_hops", "p99_hops", "correct_pct", "delivered_pct", "msgs_per_node_per_s", "wall_s"} {
		if _, ok := res[k]; !ok {
			t.Errorf("missing %q in %s", k, out.String())
		}
	}
	if res["correct_pct"].(float64) != 100 {
		t.Errorf("correct_pct = %v in a stable ring", res["correct_pct"])
	}
	if !strings.Contains(errb.String(), "sim:") {
		t.Errorf("no progress on stderr")
	}
}
