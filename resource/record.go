package resource

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"
)

// Storage layout. Every key of a pool shares the hash tag {res/<pool>}, so
// a pool lives at one owner and replica set:
//
//	{res/<pool>}/meta       {"names":[...]}  the pool's resources, sorted
//	{res/<pool>}/r/<name>   record           one resource
//
// A name with no record has never been held (token 0).
func metaKey(pool string) string      { return "{res/" + pool + "}/meta" }
func resKey(pool, name string) string { return "{res/" + pool + "}/r/" + name }

// States of a resource as reported by List.
const (
	StateFree    = "free"    // never held, or released
	StateHeld    = "held"    // held by a lease that has not expired
	StateExpired = "expired" // held by a lease past its expiry (by the reader's clock)
	StateUnknown = "unknown" // could not be read
)

// record is one resource as stored.
type record struct {
	Holder  string `json:"holder,omitempty"`
	Token   uint64 `json:"token"`
	Expires int64  `json:"expires,omitempty"` // unix milliseconds, holder's clock
	State   string `json:"state"`             // "held" or "free"
	Grant   string `json:"grant,omitempty"`   // random ID of the grant, to recognise one's own write after an unknown outcome
}

func (r record) held() bool         { return r.State == StateHeld }
func (r record) expires() time.Time { return time.UnixMilli(r.Expires) }
func (r record) encode() []byte     { b, _ := json.Marshal(r); return b }
func (r record) status(name string, now time.Time) Status {
	s := Status{Name: name, Token: r.Token, State: StateFree}
	if r.held() {
		s.Holder, s.Expires, s.State = r.Holder, r.expires(), StateHeld
		if now.After(s.Expires) {
			s.State = StateExpired
		}
	}
	return s
}

// maxExpires is the last millisecond of year 9999: a later expiry is not
// something this package writes.
const maxExpires = 253402300799999

// maxRecord bounds what we try to decode; our records are under 400 bytes.
const maxRecord = 4096

// decodeRecord parses a stored record strictly: anything this package
// would not have written is ErrCorrupt.
func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) > maxRecord {
		return r, fmt.Errorf("%w: record of %d bytes", ErrCorrupt, len(b))
	}
	if err := strictJSON(b, &r, "holder", "token", "expires", "state", "grant"); err != nil {
		return record{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	switch r.State {
	case StateHeld:
		if r.Token == 0 || r.Expires <= 0 || r.Expires > maxExpires || r.Holder == "" {
			return record{}, fmt.Errorf("%w: held record without holder, token or expiry", ErrCorrupt)
		}
		if err := checkHolder(r.Holder); err != nil {
			return record{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
	case StateFree:
		if r.Holder != "" || r.Expires != 0 || r.Grant != "" {
			return record{}, fmt.Errorf("%w: free record with a holder", ErrCorrupt)
		}
	default:
		return record{}, fmt.Errorf("%w: state %q", ErrCorrupt, r.State)
	}
	if len(r.Grant) > 64 {
		return record{}, fmt.Errorf("%w: grant ID of %d bytes", ErrCorrupt, len(r.Grant))
	}
	return r, nil
}

type meta struct {
	Names []string `json:"names"`
}

func (m meta) encode() []byte { b, _ := json.Marshal(m); return b }

func decodeMeta(b []byte) (meta, error) {
	var m meta
	if err := strictJSON(b, &m, "names"); err != nil {
		return meta{}, fmt.Errorf("%w: pool definition: %v", ErrCorrupt, err)
	}
	if len(m.Names) > MaxPoolSize {
		return meta{}, fmt.Errorf("%w: pool definition with %d names, limit %d", ErrCorrupt, len(m.Names), MaxPoolSize)
	}
	for _, n := range m.Names {
		if err := checkName("resource", n, maxName); err != nil {
			return meta{}, fmt.Errorf("%w: pool definition: %v", ErrCorrupt, err)
		}
	}
	if !slices.IsSorted(m.Names) || len(slices.Compact(slices.Clone(m.Names))) != len(m.Names) {
		return meta{}, fmt.Errorf("%w: pool definition names not sorted and unique", ErrCorrupt)
	}
	return m, nil
}

// strictJSON decodes exactly one JSON object whose keys are all in
// allowed, spelled exactly, each at most once. encoding/json alone would
// fold case ("Token" lands in Token) and let a duplicate key win silently.
func strictJSON(b []byte, v any, allowed ...string) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	seen := map[string]bool{}
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return err
		}
		k, _ := t.(string)
		if !slices.Contains(allowed, k) {
			return fmt.Errorf("unexpected key %q", k)
		}
		if seen[k] {
			return fmt.Errorf("duplicate key %q", k)
		}
		seen[k] = true
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			return err
		}
	}
	if _, err := d.Token(); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("trailing data after the object")
	}
	return json.Unmarshal(b, v)
}

const (
	maxPool = 64
	maxName = 128
)

// checkName enforces the naming rule: 1–max bytes of letters, digits and
// . _ - : @, and not "." or "..". Names end up in keys, URLs and logs.
func checkName(what, s string, max int) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s name", ErrBadName, what)
	}
	if len(s) > max {
		return fmt.Errorf("%w: %s name of %d bytes, limit %d", ErrBadName, what, len(s), max)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%w: %s name %q", ErrBadName, what, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':' || c == '@' {
			continue
		}
		return fmt.Errorf("%w: %s name %q: byte %q at %d; use letters, digits and . _ - : @", ErrBadName, what, s, c, i)
	}
	return nil
}

// checkHolder accepts "<holder>" or "<holder>/<label>".
func checkHolder(h string) error {
	base, label, found := bytes.Cut([]byte(h), []byte("/"))
	if err := checkName("holder", string(base), maxName); err != nil {
		return err
	}
	if found {
		return checkName("holder label", string(label), maxName)
	}
	return nil
}
