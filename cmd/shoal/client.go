package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func init() {
	register(command{name: "ring", summary: "show a node's ID, addresses, leaf set and owned range (via its HTTP API)", run: runRing})
}

// apiFlag adds --api with its default from SHOAL_API.
func apiFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("SHOAL_API")
	if def == "" {
		def = "127.0.0.1:8080"
	}
	return fs.String("api", def, "HTTP API of a node (host:port); default $SHOAL_API or 127.0.0.1:8080")
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// apiURL builds http://api/path.
func apiURL(api, path string) string {
	if strings.HasPrefix(api, "http://") || strings.HasPrefix(api, "https://") {
		return strings.TrimRight(api, "/") + path
	}
	return "http://" + api + path
}

// apiError turns a non-2xx response into an error with the server's message.
func apiError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return fmt.Errorf("%s (%s, HTTP %d)", e.Error, e.Code, resp.StatusCode)
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

func connErr(api string, err error) error {
	return fmt.Errorf("cannot reach the node's HTTP API at %s: %v (start a node with --http %s, or pass --api / set SHOAL_API)", api, errors.Unwrap(err), api)
}

func runRing(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ring", "[--api HOST:PORT]", stderr)
	api := apiFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	resp, err := httpClient.Get(apiURL(*api, "/v1/ring"))
	if err != nil {
		return connErr(*api, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiError(resp)
	}
	_, err = io.Copy(stdout, resp.Body)
	return err
}

// posArgs checks positional arguments: a name (KEY, TOPIC), and a data
// argument when withData; data "-" is read from standard input, at most
// limit bytes.
func posArgs(pos []string, name, dataName, noun string, withData bool, limit int) (string, []byte, error) {
	want, what := 1, name
	if withData {
		want, what = 2, name+" and "+dataName
	}
	switch {
	case len(pos) < want:
		return "", nil, fmt.Errorf("%w: need %s, got %d argument(s)", errUsage, what, len(pos))
	case len(pos) > want:
		return "", nil, fmt.Errorf("%w: unexpected argument %q (quote a %s with spaces)", errUsage, pos[want], noun)
	case pos[0] == "":
		return "", nil, fmt.Errorf("%w: %s must not be empty", errUsage, name)
	}
	if !withData {
		return pos[0], nil, nil
	}
	if pos[1] != "-" {
		return pos[0], []byte(pos[1]), nil
	}
	b, err := io.ReadAll(io.LimitReader(stdin, int64(limit)+1))
	if err != nil {
		return "", nil, fmt.Errorf("reading the %s from standard input: %w", noun, err)
	}
	if len(b) > limit {
		return "", nil, fmt.Errorf("%w: the %s on standard input is over the limit of %d bytes", errUsage, noun, limit)
	}
	return pos[0], b, nil
}
