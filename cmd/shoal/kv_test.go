package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-p2p/shoal/httpapi"
	"github.com/shoal-p2p/shoal/httpapi/kvapi"
	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport/memnet"
)

func TestKVUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"kv"}, "need a subcommand: get, put or del"},
		{[]string{"kv", "fetch", "k"}, `unknown subcommand "fetch"`},
		{[]string{"kv", "get"}, "need KEY, got 0"},
		{[]string{"kv", "get", "a", "b"}, `unexpected argument "b"`},
		{[]string{"kv", "get", ""}, "KEY must not be empty"},
		{[]string{"kv", "get", "k", "--stale=maybe"}, "invalid boolean value"},
		{[]string{"kv", "put", "k"}, "need KEY and VALUE, got 1"},
		{[]string{"kv", "put", "k", "v", "w"}, `unexpected argument "w"`},
		{[]string{"kv", "put", "k", "v", "--if-version", "x"}, "a version is a whole number"},
		{[]string{"kv", "put", "k", "v", "--if-version", "-1"}, "a version is a whole number"},
		{[]string{"kv", "put", "k", "v", "--if-version", "3", "--if-absent"}, "exclude each other"},
		{[]string{"kv", "del"}, "need KEY, got 0"},
		{[]string{"kv", "del", "k", "--if-absent"}, "flag provided but not defined: -if-absent"},
		{[]string{"kv", "del", "k", "--if-version", "v1"}, "a version is a whole number"},
		{[]string{"owner"}, "need KEY, got 0"},
		{[]string{"owner", "a", "b"}, `unexpected argument "b"`},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("shoal %q: exit %d, stderr %q; want exit 2 and %q", c.args, code, errb.String(), c.want)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"kv", "--help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "shoal kv put KEY VALUE") {
		t.Errorf("shoal kv --help: exit %d, %q", code, errb.String())
	}
}

// oneNode is a one-node ring (it owns and replicates every key) with the
// store's HTTP API on a loopback port.
func oneNode(t *testing.T) string {
	t.Helper()
	return loneNode(t, true)
}

// loneNode is a node alone; unless genesis (the first node of a new ring)
// it holds no range and can never copy one.
func loneNode(t *testing.T, genesis bool) string {
	t.Helper()
	net := memnet.New(memnet.Config{Realtime: true})
	cfg := node.DefaultConfig()
	cfg.Ring = ring.LocalConfig()
	cfg.Transport = net.Transport(id.HashString("cli test"))
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	kcfg := kv.DefaultConfig()
	kcfg.Store = kv.NewMemStore()
	kcfg.Genesis = genesis
	k, err := kv.New(n, kcfg)
	if err != nil {
		t.Fatal(err)
	}
	s := httpapi.New(n, nil)
	kvapi.Register(s, k)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		srv.Close()
		k.Close()
		n.Close()
	})
	return srv.Listener.Addr().String()
}

func TestKVAgainstANode(t *testing.T) {
	api := oneNode(t)
	shoal := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(append(args, "--api", api), &out, &errb); code != wantCode {
			t.Fatalf("shoal %q: exit %d, want %d: %s%s", args, code, wantCode, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}
	out, _ := shoal(0, "kv", "put", "dir/a key", "hello")
	if !strings.Contains(out, `stored "dir/a key" (5 bytes) at version 1`) {
		t.Fatalf("put: %q", out)
	}
	out, errs := shoal(0, "kv", "get", "dir/a key")
	if out != "hello\n" || !strings.Contains(errs, "version 1") {
		t.Fatalf("get: %q %q", out, errs)
	}
	out, _ = shoal(0, "kv", "get", "dir/a key", "--raw", "--stale")
	if out != "hello" {
		t.Fatalf("get --raw: %q", out)
	}
	_, errs = shoal(1, "kv", "put", "dir/a key", "x", "--if-version", "7")
	if !strings.Contains(errs, "is at version 1, not 7") || !strings.Contains(errs, "--if-version 1") {
		t.Fatalf("CAS at the wrong version: %q", errs)
	}
	_, errs = shoal(1, "kv", "put", "dir/a key", "x", "--if-absent")
	if !strings.Contains(errs, "already exists, at version 1") {
		t.Fatalf("create-only on an existing key: %q", errs)
	}
	out, _ = shoal(0, "kv", "put", "dir/a key", "bye", "--if-version", "1")
	if !strings.Contains(out, "at version 2") {
		t.Fatalf("CAS: %q", out)
	}
	saved := stdin
	stdin = strings.NewReader("from stdin")
	defer func() { stdin = saved }()
	out, _ = shoal(0, "kv", "put", "other", "-", "--if-absent")
	if !strings.Contains(out, `stored "other" (10 bytes) at version 1`) {
		t.Fatalf("put from stdin: %q", out)
	}
	_, errs = shoal(1, "kv", "del", "dir/a key", "--if-version", "1")
	if !strings.Contains(errs, "is at version 2, not 1") {
		t.Fatalf("delete at the wrong version: %q", errs)
	}
	out, _ = shoal(0, "kv", "del", "dir/a key", "--if-version", "2")
	if !strings.Contains(out, `deleted "dir/a key" at version 3`) {
		t.Fatalf("delete: %q", out)
	}
	_, errs = shoal(1, "kv", "get", "dir/a key")
	if !strings.Contains(errs, "not_found, HTTP 404") {
		t.Fatalf("get after delete: %q", errs)
	}
	_, errs = shoal(1, "kv", "put", "dir/a key", "x", "--if-version", "3")
	if !strings.Contains(errs, "has no value") || !strings.Contains(errs, "--if-absent") {
		t.Fatalf("CAS on a deleted key: %q", errs)
	}
	out, _ = shoal(0, "owner", "dir/a key")
	if !strings.Contains(out, kv.KeyID("dir/a key").String()) || !strings.Contains(out, "replicas (1, the owner first)") {
		t.Fatalf("owner: %q", out)
	}
	out, _ = shoal(0, "owner", "k", "--json")
	if !strings.Contains(out, `"replicas"`) {
		t.Fatalf("owner --json: %q", out)
	}
}

func TestKVNoNode(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"kv", "get", "k", "--api", "127.0.0.1:1"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "cannot reach the node's HTTP API") {
		t.Fatalf("exit %d: %q", code, errb.String())
	}
}

func TestStoreCommand(t *testing.T) {
	api := oneNode(t)
	var out, errb bytes.Buffer
	if code := run([]string{"store", "--wait", "10s", "--api", api}, &out, &errb); code != 0 || !strings.Contains(out.String(), "synchronised: the node has copied every range") {
		t.Fatalf("store --wait on a one-node ring: exit %d, %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"store", "--json", "--api", api}, &out, &errb); code != 0 || !strings.Contains(out.String(), `"synchronised": true`) {
		t.Fatalf("store --json: exit %d, %q", code, out.String())
	}
	lone := loneNode(t, false)
	out.Reset()
	if code := run([]string{"store", "--api", lone}, &out, &errb); code != 0 || !strings.Contains(out.String(), "not synchronised") {
		t.Fatalf("store on a node that holds nothing: exit %d, %q", code, out.String())
	}
	errb.Reset()
	if code := run([]string{"store", "--wait", "300ms", "--api", lone}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "not synchronised after 300ms") {
		t.Fatalf("store --wait on a node that holds nothing: exit %d, %q", code, errb.String())
	}
	for _, args := range [][]string{{"store", "x"}, {"store", "--wait", "-1s"}, {"store", "--wait", "soon"}} {
		errb.Reset()
		if code := run(append(args, "--api", api), &out, &errb); code != 2 {
			t.Errorf("shoal %q: exit %d, want 2: %q", args, code, errb.String())
		}
	}
	errb.Reset()
	if code := run([]string{"store", "--api", "127.0.0.1:1"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "cannot reach the node's HTTP API") {
		t.Fatalf("store with no node: exit %d, %q", code, errb.String())
	}
}
