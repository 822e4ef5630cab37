package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/shoal-p2p/shoal/httpapi/topics"
)

func init() {
	register(command{name: "pub", summary: "publish a message to every subscriber of a topic (via a node's HTTP API)", run: runPub})
	register(command{name: "sub", summary: "subscribe to a topic and print messages as they arrive, until Ctrl-C", run: runSub})
	register(command{name: "anycast", summary: "deliver a message to one subscriber of a topic and show which node took it", run: runAnycast})
}

// stdin is where a MESSAGE of "-" is read from (a variable for tests).
var stdin io.Reader = os.Stdin

// parseArgs parses flags wherever they appear among the positional
// arguments (`shoal pub TOPIC MSG --api X` works too) and returns the
// positional ones. Everything after "--" is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// topicArgs checks the positional arguments: a topic, and a message when
// withMsg. A message of "-" is read from standard input.
func topicArgs(pos []string, withMsg bool) (topic string, msg []byte, err error) {
	return posArgs(pos, "TOPIC", "MESSAGE", "message", withMsg, topics.MaxBody)
}

// topicURL is the URL of one of a topic's routes.
func topicURL(api, topic, route string) string {
	return apiURL(api, "/v1/topics/"+url.PathEscape(topic)+"/"+route)
}

// postTopic POSTs msg to a topic route and decodes the JSON answer into v.
func postTopic(api, topic, route string, msg []byte, v any) error {
	resp, err := httpClient.Post(topicURL(api, topic, route), "application/octet-stream", bytes.NewReader(msg))
	if err != nil {
		return connErr(api, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := apiError(resp)
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			err = fmt.Errorf("%w; the node suggests retrying in %ss", err, ra)
		}
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("unexpected answer from %s: %v", api, err)
	}
	return nil
}

func runPub(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pub", "TOPIC MESSAGE [--api HOST:PORT]   (MESSAGE - reads standard input)", stderr)
	api := apiFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	topic, msg, err := topicArgs(pos, true)
	if err != nil {
		return err
	}
	var res topics.PublishResult
	if err := postTopic(*api, topic, "publish", msg, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "published %d bytes to %q as message #%d\n", len(msg), res.Topic, res.Seq)
	return nil
}

func runAnycast(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("anycast", "TOPIC MESSAGE [--api HOST:PORT]   (MESSAGE - reads standard input)", stderr)
	api := apiFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	topic, msg, err := topicArgs(pos, true)
	if err != nil {
		return err
	}
	var res topics.AnycastResult
	if err := postTopic(*api, topic, "anycast", msg, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "accepted by node %s", res.AcceptedBy)
	if len(res.Addrs) > 0 {
		fmt.Fprintf(stdout, " (%s)", res.Addrs[0])
	}
	fmt.Fprintln(stdout)
	return nil
}

func runSub(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sub", "TOPIC [--api HOST:PORT] [--count N] [--json]", stderr)
	api := apiFlag(fs)
	count := fs.Int("count", 0, "exit after N messages (default 0: run until Ctrl-C)")
	asJSON := fs.Bool("json", false, "print each message as one JSON line (seq, data or data_base64, publisher, gap, anycast)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	topic, _, err := topicArgs(pos, false)
	if err != nil {
		return err
	}
	if *count < 0 {
		return fmt.Errorf("%w: --count must be >= 0, got %d", errUsage, *count)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return subscribe(ctx, *api, topic, *count, *asJSON, stdout, stderr)
}

// streamClient has no overall timeout: an event stream lasts as long as
// the subscription.
var streamClient = &http.Client{}

// subscribe prints the topic's deliveries until ctx ends (nil), count
// messages have arrived (nil) or the stream breaks (an error).
func subscribe(ctx context.Context, api, topic string, count int, asJSON bool, stdout, stderr io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, topicURL(api, topic, "events"), nil)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := streamClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return connErr(api, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiError(resp)
	}
	got := 0
	err = readEvents(resp.Body, func(event string, data []byte) error {
		switch event {
		case "subscribed":
			var s topics.Subscribed
			_ = json.Unmarshal(data, &s)
			fmt.Fprintf(stderr, "subscribed to %q through node %s; waiting for messages (Ctrl-C to stop)\n", topic, s.Node.Short())
		case "dropped":
			var d topics.Dropped
			_ = json.Unmarshal(data, &d)
			fmt.Fprintf(stderr, "warning: the node dropped %d message(s): this client read too slowly\n", d.Dropped)
		case "message":
			var e topics.Event
			if err := json.Unmarshal(data, &e); err != nil {
				return fmt.Errorf("bad event from the node: %v: %q", err, data)
			}
			if asJSON {
				fmt.Fprintf(stdout, "%s\n", data)
			} else {
				printEvent(stdout, &e)
			}
			got++
			if count > 0 && got >= count {
				return errEnough
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errEnough), ctx.Err() != nil:
		return nil
	case err != nil:
		return fmt.Errorf("event stream from %s broke: %v", api, err)
	}
	return fmt.Errorf("the node at %s ended the event stream (is it shutting down?)", api)
}

var errEnough = errors.New("enough messages")

func printEvent(w io.Writer, e *topics.Event) {
	var text string
	if e.Data != nil {
		text = *e.Data
	} else if e.DataBase64 != nil {
		text = "(binary, base64) " + *e.DataBase64
	}
	switch {
	case e.Anycast:
		fmt.Fprintf(w, "anycast from %s: %s\n", e.Publisher.Short(), text)
	case e.Gap > 0:
		fmt.Fprintf(w, "#%d from %s: %s   (%d earlier message(s) missed while the tree was repaired)\n", e.Seq, e.Publisher.Short(), text, e.Gap)
	default:
		fmt.Fprintf(w, "#%d from %s: %s\n", e.Seq, e.Publisher.Short(), text)
	}
}

// readEvents parses a Server-Sent Events stream, calling fn per event with
// its name ("message" if none) and its data lines joined by "\n". Comments
// are skipped. It returns fn's first error, the reader's, or nil at EOF.
func readEvents(r io.Reader, fn func(event string, data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4*topics.MaxBody) // base64 of the largest message, with room
	event, data, has := "", []byte(nil), false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if has {
				if event == "" {
					event = "message"
				}
				if err := fn(event, data); err != nil {
					return err
				}
			}
			event, data, has = "", nil, false
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				event = value
			case "data":
				if has {
					data = append(data, '\n')
				}
				data = append(data, value...)
				has = true
			}
		}
	}
	return sc.Err()
}
