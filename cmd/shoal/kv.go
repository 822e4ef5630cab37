package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/shoal-p2p/shoal/httpapi/kvapi"
)

func init() {
	register(command{name: "kv", summary: "get, put or delete a key in the replicated store (via a node's HTTP API)", run: runKV})
	register(command{name: "owner", summary: "show which node owns a key and which nodes hold its replicas", run: runOwner})
}

const kvSynopsis = `get KEY [--stale] [--raw]
       shoal kv put KEY VALUE [--if-version V | --if-absent]   (VALUE - reads standard input)
       shoal kv del KEY [--if-version V]
       (each with [--api HOST:PORT])`

func runKV(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: need a subcommand: get, put or del (see shoal kv --help)", errUsage)
	}
	switch args[0] {
	case "get":
		return runKVGet(args[1:], stdout, stderr)
	case "put":
		return runKVPut(args[1:], stdout, stderr)
	case "del", "delete":
		return runKVDel(args[1:], stdout, stderr)
	case "-h", "--help", "-help", "help":
		fmt.Fprintf(stderr, "Usage: shoal kv %s\n", kvSynopsis)
		return flag.ErrHelp
	}
	return fmt.Errorf("%w: unknown subcommand %q: use get, put or del", errUsage, args[0])
}

// versionFlag is --if-version: unset, or a version.
type versionFlag struct {
	v   uint64
	set bool
}

func (f *versionFlag) String() string {
	if !f.set {
		return ""
	}
	return strconv.FormatUint(f.v, 10)
}

func (f *versionFlag) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("a version is a whole number >= 0, got %q", s)
	}
	f.v, f.set = v, true
	return nil
}

// keyArgs checks the positional arguments: a key, and a value when
// withValue. A value of "-" is read from standard input.
func keyArgs(pos []string, withValue bool) (key string, value []byte, err error) {
	return posArgs(pos, "KEY", "VALUE", "value", withValue, kvapi.MaxValue)
}

// kvURL is the URL of a key under one of the store's routes.
func kvURL(api, route, key string) string {
	return apiURL(api, "/v1/"+route+"/"+url.PathEscape(key))
}

// kvDo sends one request and returns the response when it is 2xx; other
// statuses become errors (412 through mismatch).
func kvDo(api string, req *http.Request, mismatch func(resp *http.Response) error) (*http.Response, error) {
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, connErr(api, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusPreconditionFailed && mismatch != nil {
		return nil, mismatch(resp)
	}
	err = apiError(resp)
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		err = fmt.Errorf("%w; the node suggests retrying in %ss (a write may or may not have taken effect: read the key to see)", err, ra)
	}
	return nil, err
}

// current is the version a 412 reports in its ETag; ok is false when the
// key has no value.
func current(resp *http.Response) (uint64, bool) {
	v, err := kvapi.ParseETag(resp.Header.Get("ETag"))
	return v, err == nil && resp.Header.Get("ETag") != ""
}

func runKVGet(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("kv get", "KEY [--stale] [--raw] [--api HOST:PORT]", stderr)
	api := apiFlag(fs)
	stale := fs.Bool("stale", false, "read the owner's copy without confirming with a majority: cheaper, may miss the latest writes")
	raw := fs.Bool("raw", false, "print the value exactly, without a newline after it and without the version on standard error")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	key, _, err := keyArgs(pos, false)
	if err != nil {
		return err
	}
	u := kvURL(*api, "kv", key)
	if *stale {
		u += "?stale=true"
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := kvDo(*api, req, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the value from %s: %w", *api, err)
	}
	if *raw {
		_, err = stdout.Write(b)
		return err
	}
	if _, err := stdout.Write(b); err != nil {
		return err
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		fmt.Fprintln(stdout)
	}
	if v, ok := current(resp); ok {
		fmt.Fprintf(stderr, "(version %d)\n", v)
	}
	return nil
}

func runKVPut(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("kv put", "KEY VALUE [--if-version V | --if-absent] [--api HOST:PORT]   (VALUE - reads standard input)", stderr)
	api := apiFlag(fs)
	var ifVersion versionFlag
	fs.Var(&ifVersion, "if-version", "compare-and-set: write only if the key is at version V (from a get or an earlier put)")
	ifAbsent := fs.Bool("if-absent", false, "create only: write only if the key has no value")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if ifVersion.set && *ifAbsent {
		return fmt.Errorf("%w: --if-version and --if-absent exclude each other", errUsage)
	}
	key, value, err := keyArgs(pos, true)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPut, kvURL(*api, "kv", key), bytes.NewReader(value))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	switch {
	case ifVersion.set:
		req.Header.Set("If-Match", kvapi.ETag(ifVersion.v))
	case *ifAbsent:
		req.Header.Set("If-None-Match", "*")
	}
	resp, err := kvDo(*api, req, func(resp *http.Response) error {
		return mismatchError(key, resp, ifVersion, *ifAbsent)
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var res kvapi.WriteResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return fmt.Errorf("unexpected answer from %s: %v", *api, err)
	}
	fmt.Fprintf(stdout, "stored %q (%d bytes) at version %d\n", res.Key, len(value), res.Version)
	return nil
}

func runKVDel(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("kv del", "KEY [--if-version V] [--api HOST:PORT]", stderr)
	api := apiFlag(fs)
	var ifVersion versionFlag
	fs.Var(&ifVersion, "if-version", "delete only if the key is at version V")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	key, _, err := keyArgs(pos, false)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodDelete, kvURL(*api, "kv", key), nil)
	if err != nil {
		return err
	}
	if ifVersion.set {
		req.Header.Set("If-Match", kvapi.ETag(ifVersion.v))
	}
	resp, err := kvDo(*api, req, func(resp *http.Response) error {
		return mismatchError(key, resp, ifVersion, false)
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var res kvapi.WriteResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return fmt.Errorf("unexpected answer from %s: %v", *api, err)
	}
	fmt.Fprintf(stdout, "deleted %q at version %d\n", res.Key, res.Version)
	return nil
}

// errMismatch marks a failed condition (HTTP 412).
var errMismatch = errors.New("condition failed")

// mismatchError explains a 412: the current version, and what to do.
func mismatchError(key string, resp *http.Response, ifVersion versionFlag, ifAbsent bool) error {
	v, exists := current(resp)
	switch {
	case ifAbsent && exists:
		return fmt.Errorf("%w: %q already exists, at version %d; to replace it, run the put again with --if-version %d", errMismatch, key, v, v)
	case !exists:
		return fmt.Errorf("%w: %q has no value (expected version %d); to create it, use --if-absent", errMismatch, key, ifVersion.v)
	}
	return fmt.Errorf("%w: %q is at version %d, not %d: someone else wrote it; read it again (shoal kv get %s) and retry with --if-version %d if your change still applies",
		errMismatch, key, v, ifVersion.v, quoteArg(key), v)
}

// quoteArg quotes a key for a shell command line when it needs it.
func quoteArg(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '/' || r == ':') {
			return strconv.Quote(s)
		}
	}
	return s
}

func runOwner(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("owner", "KEY [--json] [--api HOST:PORT]", stderr)
	api := apiFlag(fs)
	asJSON := fs.Bool("json", false, "print the node's JSON answer")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	key, _, err := keyArgs(pos, false)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodGet, kvURL(*api, "owner", key), nil)
	if err != nil {
		return err
	}
	resp, err := kvDo(*api, req, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if *asJSON {
		_, err = io.Copy(stdout, resp.Body)
		return err
	}
	var p kvapi.Placement
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return fmt.Errorf("unexpected answer from %s: %v", *api, err)
	}
	fmt.Fprintf(stdout, "key %q\n  ID       %s\n  owner    %s\n", p.Key, p.ID, p.Owner.ID)
	for _, a := range p.Owner.Addrs {
		fmt.Fprintf(stdout, "           %s\n", a)
	}
	fmt.Fprintf(stdout, "  replicas (%d, the owner first):\n", len(p.Replicas))
	for _, r := range p.Replicas {
		addr := ""
		if len(r.Addrs) > 0 {
			addr = "  " + r.Addrs[0]
		}
		fmt.Fprintf(stdout, "    %s%s\n", r.ID, addr)
	}
	return nil
}
