package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/shoal-p2p/shoal/httpapi/kvapi"
)

func init() {
	register(command{name: "store", summary: "show whether a node's store has copied every range it replicates; --wait for it (rolling restarts)", run: runStore})
}

func runStore(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("store", "[--wait DURATION] [--json] [--api HOST:PORT]", stderr)
	api := apiFlag(fs)
	wait := fs.Duration("wait", 0, "poll until the node is synchronised, for at most this long (e.g. 2m); exit 1 if it is not by then")
	asJSON := fs.Bool("json", false, "print the node's JSON answer")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *wait < 0 {
		return fmt.Errorf("%w: --wait must not be negative, got %v", errUsage, *wait)
	}
	start := time.Now()
	for polls := 0; ; polls++ {
		st, raw, err := getStore(*api)
		if err != nil {
			return err
		}
		waited := time.Since(start)
		if st.Synchronised || waited >= *wait {
			if *asJSON {
				_, err = stdout.Write(raw)
				if err == nil && !st.Synchronised && *wait > 0 {
					err = notSynchronised(*wait)
				}
				return err
			}
			if st.Synchronised {
				if *wait > 0 {
					fmt.Fprintf(stdout, "synchronised: the node has copied every range it replicates (after %.1fs)\n", waited.Seconds())
				} else {
					fmt.Fprintln(stdout, "synchronised: the node has copied every range it replicates")
				}
				return nil
			}
			if *wait > 0 {
				return notSynchronised(*wait)
			}
			fmt.Fprintln(stdout, "not synchronised: the node is still copying ranges it replicates (use --wait DURATION to wait for it)")
			return nil
		}
		if polls == 0 {
			fmt.Fprintf(stderr, "waiting up to %v for %s to copy the ranges it replicates...\n", *wait, *api)
		}
		time.Sleep(min(200*time.Millisecond, *wait-waited))
	}
}

func notSynchronised(wait time.Duration) error {
	return fmt.Errorf("not synchronised after %v: the node is still copying ranges it replicates, or the nodes it must copy from are unreachable (a range needs a majority of each replica set it had; see docs/kv.md); check its neighbours with shoal ring, and do not take another node down meanwhile", wait)
}

func getStore(api string) (kvapi.Store, []byte, error) {
	resp, err := httpClient.Get(apiURL(api, "/v1/store"))
	if err != nil {
		return kvapi.Store{}, nil, connErr(api, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return kvapi.Store{}, nil, apiError(resp)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return kvapi.Store{}, nil, fmt.Errorf("reading the answer of %s: %v", api, err)
	}
	var st kvapi.Store
	if err := json.Unmarshal(raw, &st); err != nil {
		return kvapi.Store{}, nil, fmt.Errorf("unexpected answer from %s: %v", api, err)
	}
	return st, raw, nil
}
