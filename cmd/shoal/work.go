package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shoal-p2p/shoal/httpapi/queues"
	"github.com/shoal-p2p/shoal/httpapi/resources"
)

func init() {
	register(command{name: "queue", summary: "create task queues, enqueue, show stats and dead letters, re-drive (via a node's HTTP API)", run: runQueue})
	register(command{name: "resources", summary: "list who holds each resource of a pool; define pools, acquire, renew, release", run: runResources})
}

// apiJSON sends a request with an optional JSON or raw body to a node's
// API and decodes a 2xx answer into out.
func apiJSON(api, method, path string, body any, hdr http.Header, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, apiURL(api, path), rd)
	if err != nil {
		return err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return connErr(api, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		err := apiError(resp)
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			err = fmt.Errorf("%w; the node suggests retrying in %ss", err, ra)
		}
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("unexpected answer from %s: %v", api, err)
	}
	return nil
}

const queueSynopsis = `create QUEUE [--visibility 30s] [--max-attempts 5] [--backoff 1s] [--retention 24h]
       shoal queue enqueue QUEUE PAYLOAD [--key IDEMPOTENCY-KEY] [--delay 5s]   (PAYLOAD - reads standard input)
       shoal queue stats QUEUE
       shoal queue dead QUEUE
       shoal queue redrive QUEUE [TASK-ID...]   (none: every dead task)
       (each with [--api HOST:PORT])`

func runQueue(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: need a subcommand: create, enqueue, stats, dead or redrive (see shoal queue --help)", errUsage)
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "create":
		return runQueueCreate(rest, stdout, stderr)
	case "enqueue":
		return runQueueEnqueue(rest, stdout, stderr)
	case "stats":
		return runQueueStats(rest, stdout, stderr)
	case "dead":
		return runQueueDead(rest, stdout, stderr)
	case "redrive":
		return runQueueRedrive(rest, stdout, stderr)
	case "-h", "--help", "-help", "help":
		fmt.Fprintf(stderr, "Usage: shoal queue %s\n", queueSynopsis)
		return flag.ErrHelp
	}
	return fmt.Errorf("%w: unknown subcommand %q: use create, enqueue, stats, dead or redrive", errUsage, sub)
}

func queuePath(q string, rest ...string) string { return v1Path("queues", q, rest...) }

// v1Path is /v1/KIND/NAME[/REST...], each element URL-escaped.
func v1Path(kind, name string, rest ...string) string {
	p := "/v1/" + kind + "/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

func runQueueCreate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("queue create", "QUEUE [--visibility D] [--max-attempts N] [--backoff D] [--max-backoff D] [--retention D]", stderr)
	api := apiFlag(fs)
	var c queues.Config
	fs.StringVar(&c.Visibility, "visibility", "", "how long a worker holds a task before it is offered again unless extended (default 30s)")
	fs.IntVar(&c.MaxAttempts, "max-attempts", 0, "attempts before a task moves to the dead-letter queue (default 5)")
	fs.StringVar(&c.Backoff, "backoff", "", "first retry delay, doubled each attempt (default 1s)")
	fs.StringVar(&c.MaxBackoff, "max-backoff", "", "longest retry delay (default 1m)")
	fs.StringVar(&c.Retention, "retention", "", "how long completed tasks are remembered: the idempotency window (default 24h)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	q, _, err := posArgs(pos, "QUEUE", "", "queue name", false, 0)
	if err != nil {
		return err
	}
	var st queues.Stats
	if err := apiJSON(*api, http.MethodPut, queuePath(q), c, nil, &st); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "queue %q ready at node %s: visibility %s, %d attempts, backoff %s..%s, retention %s\n",
		st.Queue, short(st.Owner), st.Config.Visibility, st.Config.MaxAttempts, st.Config.Backoff, st.Config.MaxBackoff, st.Config.Retention)
	return nil
}

func runQueueEnqueue(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("queue enqueue", "QUEUE PAYLOAD [--key K] [--delay D]   (PAYLOAD - reads standard input)", stderr)
	api := apiFlag(fs)
	key := fs.String("key", "", "idempotency key: enqueueing again with the same key returns the first task's ID")
	delay := fs.Duration("delay", 0, "do not start the task before this delay")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	q, payload, err := posArgs(pos, "QUEUE", "PAYLOAD", "payload", true, 4<<20)
	if err != nil {
		return err
	}
	path := queuePath(q, "tasks")
	if *delay > 0 {
		path += "?delay=" + url.QueryEscape(delay.String())
	}
	hdr := http.Header{}
	if *key != "" {
		hdr.Set("Idempotency-Key", *key)
	}
	var res queues.Enqueued
	if err := apiJSON(*api, http.MethodPost, path, payload, hdr, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enqueued task %s on %q\n", res.ID, res.Queue)
	return nil
}

func runQueueStats(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("queue stats", "QUEUE [--json]", stderr)
	api := apiFlag(fs)
	asJSON := fs.Bool("json", false, "print the stats as JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	q, _, err := posArgs(pos, "QUEUE", "", "queue name", false, 0)
	if err != nil {
		return err
	}
	var st queues.Stats
	if err := apiJSON(*api, http.MethodGet, queuePath(q), nil, nil, &st); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(st)
	}
	fmt.Fprintf(stdout, "queue %q at node %s: %d ready, %d delayed, %d running, %d done, %d dead\n",
		st.Queue, short(st.Owner), st.Ready, st.Delayed, st.Leased, st.Done, st.Dead)
	return nil
}

func runQueueDead(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("queue dead", "QUEUE", stderr)
	api := apiFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	q, _, err := posArgs(pos, "QUEUE", "", "queue name", false, 0)
	if err != nil {
		return err
	}
	var ds []queues.DeadTask
	if err := apiJSON(*api, http.MethodGet, queuePath(q, "dead"), nil, nil, &ds); err != nil {
		return err
	}
	if len(ds) == 0 {
		fmt.Fprintf(stdout, "no dead tasks on %q\n", q)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tATTEMPTS\tDIED\tLAST ERROR\tPAYLOAD")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", d.ID, d.Attempts, d.Died.Format(time.RFC3339), d.LastError, clip(string(d.Payload), 40))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "re-drive with: shoal queue redrive %s [TASK...]\n", q)
	return nil
}

func runQueueRedrive(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("queue redrive", "QUEUE [TASK-ID...]", stderr)
	api := apiFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || pos[0] == "" {
		return fmt.Errorf("%w: need QUEUE", errUsage)
	}
	var res map[string]int
	if err := apiJSON(*api, http.MethodPost, queuePath(pos[0], "redrive"), map[string][]string{"ids": pos[1:]}, nil, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "re-drove %d dead task(s) of %q back to ready\n", res["redriven"], pos[0])
	return nil
}

const resourcesSynopsis = `POOL                                   list each resource, its holder, token and expiry
       shoal resources define POOL NAME...                    define a pool or add names to it
       shoal resources acquire POOL [NAME] [--holder LABEL]   take any free resource (or NAME)
       shoal resources renew POOL NAME --token T
       shoal resources release POOL NAME --token T
       (each with [--api HOST:PORT])`

func runResources(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: need a POOL to list, or a subcommand: define, acquire, renew, release (see shoal resources --help)", errUsage)
	}
	switch args[0] {
	case "define":
		return runResDefine(args[1:], stdout, stderr)
	case "acquire":
		return runResAcquire(args[1:], stdout, stderr)
	case "renew":
		return runResToken("renew", args[1:], stdout, stderr)
	case "release":
		return runResToken("release", args[1:], stdout, stderr)
	case "list":
		return runResList(args[1:], stdout, stderr)
	case "-h", "--help", "-help", "help":
		fmt.Fprintf(stderr, "Usage: shoal resources %s\n", resourcesSynopsis)
		return flag.ErrHelp
	}
	return runResList(args, stdout, stderr)
}

func poolPath(pool string, rest ...string) string { return v1Path("resources", pool, rest...) }

func runResList(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("resources", "POOL [--json]", stderr)
	api := apiFlag(fs)
	asJSON := fs.Bool("json", false, "print the listing as JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	pool, _, err := posArgs(pos, "POOL", "", "pool name", false, 0)
	if err != nil {
		return err
	}
	var l resources.Listing
	if err := apiJSON(*api, http.MethodGet, poolPath(pool), nil, nil, &l); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(l)
	}
	printListing(stdout, l, time.Now())
	return nil
}

// printListing prints a pool as a table.
func printListing(w io.Writer, l resources.Listing, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tSTATE\tHOLDER\tTOKEN\tEXPIRES")
	for _, r := range l.Resources {
		exp := "-"
		if !r.Expires.IsZero() && r.State != "free" {
			exp = r.Expires.Format(time.RFC3339) + " (" + r.Expires.Sub(now).Round(100*time.Millisecond).String() + ")"
		}
		holder := r.Holder
		if holder == "" {
			holder = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Name, r.State, short(holder), r.Token, exp)
	}
	tw.Flush()
}

func runResDefine(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("resources define", "POOL NAME...", stderr)
	api := apiFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 || pos[0] == "" {
		return fmt.Errorf("%w: need POOL and at least one NAME", errUsage)
	}
	var l resources.Listing
	if err := apiJSON(*api, http.MethodPut, poolPath(pos[0]), map[string][]string{"names": pos[1:]}, nil, &l); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pool %q has %d resource(s)\n", l.Pool, len(l.Resources))
	return nil
}

func runResAcquire(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("resources acquire", "POOL [NAME] [--holder LABEL]", stderr)
	api := apiFlag(fs)
	holder := fs.String("holder", "cli", "a label for the holder, after the node's ID")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 || pos[0] == "" {
		return fmt.Errorf("%w: need POOL and optionally NAME", errUsage)
	}
	q := url.Values{}
	if len(pos) == 2 {
		q.Set("name", pos[1])
	}
	if *holder != "" {
		q.Set("holder", *holder)
	}
	var l resources.Lease
	if err := apiJSON(*api, http.MethodPost, poolPath(pos[0], "acquire")+"?"+q.Encode(), nil, nil, &l); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "acquired %s/%s as %s with token %d until %s\nrenew before then: shoal resources renew %s %s --token %d\n",
		l.Pool, l.Name, short(l.Holder), l.Token, l.Expires.Format(time.RFC3339Nano), l.Pool, l.Name, l.Token)
	return nil
}

func runResToken(what string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("resources "+what, "POOL NAME --token T", stderr)
	api := apiFlag(fs)
	token := fs.String("token", "", "the lease's fencing token (printed by acquire)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || pos[0] == "" || pos[1] == "" {
		return fmt.Errorf("%w: need POOL and NAME", errUsage)
	}
	t, err := strconv.ParseUint(*token, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: --token must be the lease's token, a whole number (got %q)", errUsage, *token)
	}
	if what == "release" {
		if err := apiJSON(*api, http.MethodPost, poolPath(pos[0], pos[1], "release"), map[string]uint64{"token": t}, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "released %s/%s\n", pos[0], pos[1])
		return nil
	}
	var l resources.Lease
	if err := apiJSON(*api, http.MethodPost, poolPath(pos[0], pos[1], "renew"), map[string]uint64{"token": t}, nil, &l); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "renewed %s/%s (token %d) until %s\n", l.Pool, l.Name, l.Token, l.Expires.Format(time.RFC3339Nano))
	return nil
}

// short abbreviates a 40-hex-digit node ID at the start of s.
func short(s string) string {
	if len(s) >= 40 && !strings.ContainsAny(s[:40], "/:") {
		return s[:8] + s[40:]
	}
	return s
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
