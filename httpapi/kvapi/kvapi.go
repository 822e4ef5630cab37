// Package kvapi serves the replicated key-value store over a node's HTTP
// API, with HTTP's own optimistic concurrency (ETag, If-Match,
// If-None-Match):
//
//	GET    /v1/kv/{key}   200, body = the value, ETag: "<version>"; 404 if absent.
//	                      ?stale=true reads the owner's copy without
//	                      confirming with a majority (cheaper, may be stale).
//	                      If-None-Match: "<version>" answers 304 when unchanged.
//	PUT    /v1/kv/{key}   body = the value; 200 {"key", "version"}, ETag: "<version>".
//	                      If-Match: "<version>"  compare-and-set;
//	                      If-None-Match: *       create only.
//	DELETE /v1/kv/{key}   200 {"key", "version", "deleted": true} (the tombstone's
//	                      version); the same If-Match rule.
//	GET    /v1/owner/{key}  200 {"key", "id", "owner", "replicas"}: the key's
//	                      ring ID, its owner and replica set (IDs and addresses).
//
// {key} is the rest of the path, percent-escaped: any non-empty UTF-8
// string up to the store's key limit. A "/" may stay unescaped, but escape
// it (as %2F; Go's url.PathEscape does) when the key has empty or dot
// segments ("a//b", "../x", "a/"): the router cleans such paths and
// redirects otherwise.
//
// A failed condition answers 412 with the key's current version in ETag,
// or without ETag if the key has no value. Errors are JSON
// {"error", "code"}:
//
//	400 bad_key           empty, over-long or non-UTF-8 key
//	400 bad_precondition  If-Match that is not one version, or If-None-Match
//	                      other than * on a write
//	400 bad_request       body cut short, bad ?stale
//	404 not_found         the key has no value
//	412 version_mismatch  the condition failed
//	413 too_large         value over the limit (checked before reading the body)
//	503 unavailable       no majority of the key's replicas reachable, its owner
//	                      changing, or the node shutting down (Retry-After)
//
// A write that answers 503 may or may not have taken effect; reading the
// key (or retrying with If-Match) tells which.
package kvapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-p2p/shoal/httpapi"
	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/kv"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/service"
	"github.com/shoal-p2p/shoal/transport"
)

const (
	// MaxValue is the largest value a PUT accepts, kv's default limit
	// (1 MiB). A longer body is refused with 413 without reading it.
	MaxValue = 1 << 20
	// CallTimeout bounds one store operation.
	CallTimeout = 15 * time.Second
	// retryAfter is the hint sent with 503s.
	retryAfter = time.Second
)

// WriteResult is the body of a successful PUT or DELETE.
type WriteResult struct {
	Key     string `json:"key"`
	Version uint64 `json:"version"`
	Deleted bool   `json:"deleted,omitempty"`
}

// Placement is the body of GET /v1/owner/{key}.
type Placement struct {
	Key      string           `json:"key"`
	ID       id.ID            `json:"id"`
	Owner    transport.Peer   `json:"owner"`
	Replicas []transport.Peer `json:"replicas"`
}

type api struct {
	k *kv.KV
}

// Register adds the key-value routes to s, served by k.
func Register(s *httpapi.Server, k *kv.KV) {
	a := &api{k: k}
	s.Handle("GET /v1/kv/{key...}", a.get)
	s.Handle("PUT /v1/kv/{key...}", a.put)
	s.Handle("DELETE /v1/kv/{key...}", a.del)
	s.Handle("/v1/kv/{key...}", methodNotAllowed("GET, HEAD, PUT, DELETE"))
	s.Handle("GET /v1/owner/{key...}", a.owner)
	s.Handle("/v1/owner/{key...}", methodNotAllowed("GET, HEAD"))
	s.Handle("GET /v1/store", a.store)
	s.Handle("/v1/store", methodNotAllowed("GET, HEAD"))
}

// Store is the body of GET /v1/store: this node's part of the store.
type Store struct {
	// Synchronised: the node has copied every range it replicates
	// (kv.KV.Synchronised). Before taking another node down (a rolling
	// restart), wait until every node says true.
	Synchronised bool `json:"synchronised"`
}

func (a *api) store(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, Store{Synchronised: a.k.Synchronised()})
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		httpapi.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s is not allowed here; use %s", r.Method, allow))
	}
}

// ETag formats a version as an entity tag: "7".
func ETag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }

// ParseETag reads a version from an entity tag ("7"; the quotes may be
// left out). Weak tags (W/"7") and lists are not versions.
func ParseETag(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if len(t) >= 2 && t[0] == '"' && t[len(t)-1] == '"' {
		t = t[1 : len(t)-1]
	}
	v, err := strconv.ParseUint(t, 10, 64)
	if err != nil || t == "" || t[0] == '+' {
		return 0, fmt.Errorf("%q is not a version: send one version as a quoted decimal, e.g. If-Match: \"7\" (the ETag of a read or write)", s)
	}
	return v, nil
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	var opts []kv.ReadOption
	if q := r.URL.Query(); q.Has("stale") {
		stale := true
		if s := q.Get("stale"); s != "" {
			b, err := strconv.ParseBool(s)
			if err != nil {
				httpapi.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("?stale must be true or false, got %q", s))
				return
			}
			stale = b
		}
		if stale {
			opts = append(opts, kv.Stale())
		}
	}
	var inm *uint64
	if h := r.Header.Get("If-None-Match"); h != "" && h != "*" {
		v, err := ParseETag(h)
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "bad_precondition", "If-None-Match: "+err.Error())
			return
		}
		inm = &v
	}
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	it, err := a.k.Get(ctx, key, opts...)
	if err != nil {
		writeErr(w, err)
		return
	}
	h := w.Header()
	h.Set("ETag", ETag(it.Version))
	if inm != nil && *inm == it.Version {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(it.Value)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(it.Value)
}

// conditions reads If-Match and If-None-Match of a write; on failure it has
// answered and returns false.
func conditions(w http.ResponseWriter, r *http.Request, allowCreate bool) ([]kv.WriteOption, bool) {
	im, inm := r.Header.Values("If-Match"), r.Header.Values("If-None-Match")
	switch {
	case len(im) > 0 && len(inm) > 0:
		httpapi.WriteError(w, http.StatusBadRequest, "bad_precondition", "send If-Match or If-None-Match, not both")
		return nil, false
	case len(im) > 1 || len(im) == 1 && strings.Contains(im[0], ","):
		httpapi.WriteError(w, http.StatusBadRequest, "bad_precondition", "If-Match must be one version, not a list")
		return nil, false
	case len(im) == 1:
		if strings.TrimSpace(im[0]) == "*" {
			httpapi.WriteError(w, http.StatusBadRequest, "bad_precondition", `If-Match: * is not supported; send the version you read, e.g. If-Match: "7"`)
			return nil, false
		}
		v, err := ParseETag(im[0])
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "bad_precondition", "If-Match: "+err.Error())
			return nil, false
		}
		return []kv.WriteOption{kv.IfVersion(v)}, true
	case len(inm) > 0:
		if !allowCreate || len(inm) > 1 || strings.TrimSpace(inm[0]) != "*" {
			what := "If-None-Match: * (create only) is the only If-None-Match a PUT takes"
			if !allowCreate {
				what = "a DELETE takes If-Match only"
			}
			httpapi.WriteError(w, http.StatusBadRequest, "bad_precondition", what)
			return nil, false
		}
		return []kv.WriteOption{kv.IfAbsent()}, true
	}
	return nil, true
}

// body reads a PUT's value, at most MaxValue+1 bytes; on failure it has
// answered and returns false. A body that ends early (the client went
// away, or sent less than its Content-Length) is refused: nothing is stored.
func body(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > MaxValue {
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("value of %d bytes is over the limit of %d", r.ContentLength, MaxValue))
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxValue+1))
	switch {
	case err != nil:
		httpapi.WriteError(w, http.StatusBadRequest, "bad_request", "reading the value: "+err.Error()+"; nothing was stored")
		return nil, false
	case len(b) > MaxValue:
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("value is over the limit of %d bytes", MaxValue))
		return nil, false
	case r.ContentLength >= 0 && int64(len(b)) != r.ContentLength:
		httpapi.WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("body has %d bytes, Content-Length said %d; nothing was stored", len(b), r.ContentLength))
		return nil, false
	}
	return b, true
}

func (a *api) put(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	opts, ok := conditions(w, r, true)
	if !ok {
		return
	}
	value, ok := body(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	v, err := a.k.Put(ctx, key, value, opts...)
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("ETag", ETag(v))
	httpapi.WriteJSON(w, http.StatusOK, WriteResult{Key: key, Version: v})
}

func (a *api) del(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	opts, ok := conditions(w, r, false)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	v, err := a.k.Delete(ctx, key, opts...)
	if err != nil {
		writeErr(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, WriteResult{Key: key, Version: v, Deleted: true})
}

func (a *api) owner(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	p, err := a.k.Placement(ctx, key)
	if err != nil {
		writeErr(w, err)
		return
	}
	if len(p.Replicas) == 0 {
		httpapi.WriteUnavailable(w, "unavailable", fmt.Sprintf("the owner of %q does not know the key's replica set yet; the ring is still forming", key), retryAfter)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, Placement{Key: p.Key, ID: p.ID, Owner: p.Owner, Replicas: p.Replicas})
}

// writeErr answers a failed store operation.
func writeErr(w http.ResponseWriter, err error) {
	var vm *kv.VersionMismatchError
	var se *service.Error
	switch {
	case errors.As(err, &vm):
		if vm.Exists {
			w.Header().Set("ETag", ETag(vm.Have))
		}
		httpapi.WriteError(w, http.StatusPreconditionFailed, "version_mismatch", vm.Error())
	case errors.Is(err, kv.ErrAmbiguous):
		httpapi.WriteError(w, http.StatusConflict, "outcome_unknown", err.Error())
	case errors.Is(err, kv.ErrBadKey):
		httpapi.WriteError(w, http.StatusBadRequest, "bad_key", err.Error())
	case errors.Is(err, kv.ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, kv.ErrTooLarge), errors.Is(err, service.ErrTooLarge), errors.Is(err, node.ErrTooLarge):
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, service.ErrBadRequest):
		httpapi.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.As(err, &se) && (se.Code == service.CodeOverloaded || se.Code == service.CodeUnavailable):
		httpapi.WriteUnavailable(w, "unavailable", err.Error(), max(se.RetryAfter(), retryAfter))
	case errors.Is(err, kv.ErrUnavailable), errors.Is(err, kv.ErrClosed), errors.Is(err, node.ErrClosed),
		errors.Is(err, node.ErrUndeliverable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		httpapi.WriteUnavailable(w, "unavailable", err.Error(), retryAfter)
	default:
		httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}
