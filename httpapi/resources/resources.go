// Package resources serves the shared resources (package resource) over a
// node's HTTP API — the "human peeking into the ring":
//
//	GET  /v1/resources/{pool}                 200 {"pool", "resources": [{"name", "state", "holder",
//	                                          "token", "expires"}]}: who holds what, until when.
//	PUT  /v1/resources/{pool}                 body {"names": ["10.0.0.1", ...]}: define the pool or
//	                                          add names; 200 the listing.
//	POST /v1/resources/{pool}/acquire         optional ?name=N (that resource, else any free one)
//	                                          and ?holder=LABEL; 200 the lease {"pool", "name",
//	                                          "holder", "token", "expires"}. The node's holder ID
//	                                          is prefixed to the label.
//	POST /v1/resources/{pool}/{name}/renew    body {"token": T}; 200 the renewed lease.
//	POST /v1/resources/{pool}/{name}/release  body {"token": T}; 200 {"released": true}.
//
// An HTTP client holds a lease only as long as it renews it before
// "expires" (less the drift margin): nothing renews it on its behalf.
// Errors are JSON {"error", "code"}: 400 bad_name / bad_request, 404
// unknown_pool, 409 held (with the holder and expiry in the message),
// 409 pool_exhausted, 409 lease_lost / not_holder, 503 unavailable.
package resources

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/shoal-p2p/shoal/httpapi"
	"github.com/shoal-p2p/shoal/resource"
)

// CallTimeout bounds one operation.
const CallTimeout = 15 * time.Second

// Resource is one line of a pool's listing.
type Resource struct {
	Name    string    `json:"name"`
	State   string    `json:"state"`
	Holder  string    `json:"holder,omitempty"`
	Token   uint64    `json:"token"`
	Expires time.Time `json:"expires,omitzero"`
}

// Listing is the body of GET /v1/resources/{pool}.
type Listing struct {
	Pool      string     `json:"pool"`
	Resources []Resource `json:"resources"`
}

// Lease is the body of a successful acquire or renew.
type Lease struct {
	Pool    string    `json:"pool"`
	Name    string    `json:"name"`
	Holder  string    `json:"holder"`
	Token   uint64    `json:"token"`
	Expires time.Time `json:"expires"`
}

type api struct{ m *resource.Manager }

// Register adds the resource routes to s, served by m.
func Register(s *httpapi.Server, m *resource.Manager) {
	a := &api{m: m}
	s.Handle("GET /v1/resources/{pool}", a.list)
	s.Handle("PUT /v1/resources/{pool}", a.define)
	s.Handle("POST /v1/resources/{pool}/acquire", a.acquire)
	s.Handle("POST /v1/resources/{pool}/{name}/renew", a.renew)
	s.Handle("POST /v1/resources/{pool}/{name}/release", a.release)
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	a.writeListing(ctx, w, r.PathValue("pool"))
}

func (a *api) writeListing(ctx context.Context, w http.ResponseWriter, pool string) {
	sts, err := a.m.List(ctx, pool)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := Listing{Pool: pool, Resources: make([]Resource, 0, len(sts))}
	for _, s := range sts {
		out.Resources = append(out.Resources, Resource{Name: s.Name, State: s.State, Holder: s.Holder, Token: s.Token, Expires: s.Expires})
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (a *api) define(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Names []string `json:"names"`
	}
	if !decode(w, r, &req, `{"names": ["10.0.0.1", "10.0.0.2"]}`) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	pool := r.PathValue("pool")
	if err := a.m.DefinePool(ctx, pool, req.Names); err != nil {
		writeErr(w, err)
		return
	}
	a.writeListing(ctx, w, pool)
}

func (a *api) acquire(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var opts []resource.AcquireOption
	if h := q.Get("holder"); h != "" {
		opts = append(opts, resource.As(h))
	}
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	pool := r.PathValue("pool")
	var (
		l   *resource.Lease
		err error
	)
	if name := q.Get("name"); name != "" {
		l, err = a.m.AcquireName(ctx, pool, name, opts...)
	} else {
		l, err = a.m.Acquire(ctx, pool, opts...)
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, fromLease(l))
}

type tokenReq struct {
	Token uint64 `json:"token"`
}

func (a *api) renew(w http.ResponseWriter, r *http.Request) {
	var req tokenReq
	if !decode(w, r, &req, `{"token": 7}`) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	l, err := a.m.RenewToken(ctx, r.PathValue("pool"), r.PathValue("name"), req.Token)
	if err != nil {
		writeErr(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, fromLease(l))
}

func (a *api) release(w http.ResponseWriter, r *http.Request) {
	var req tokenReq
	if !decode(w, r, &req, `{"token": 7}`) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), CallTimeout)
	defer cancel()
	if err := a.m.ReleaseToken(ctx, r.PathValue("pool"), r.PathValue("name"), req.Token); err != nil {
		writeErr(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"released": true})
}

// decode reads a small JSON body; on failure it has answered.
func decode(w http.ResponseWriter, r *http.Request, v any, example string) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "bad_request", "the body must be JSON like "+example+": "+err.Error())
		return false
	}
	return true
}

func fromLease(l *resource.Lease) Lease {
	return Lease{Pool: l.Pool, Name: l.Name, Holder: l.Holder, Token: l.Token, Expires: l.Expires}
}

// writeErr answers a failed operation.
func writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, resource.ErrUnknownPool):
		httpapi.WriteError(w, http.StatusNotFound, "unknown_pool", err.Error())
	case errors.Is(err, resource.ErrBadName):
		httpapi.WriteError(w, http.StatusBadRequest, "bad_name", err.Error())
	case errors.Is(err, resource.ErrHeld):
		httpapi.WriteError(w, http.StatusConflict, "held", err.Error())
	case errors.Is(err, resource.ErrPoolExhausted):
		httpapi.WriteError(w, http.StatusConflict, "pool_exhausted", err.Error())
	case errors.Is(err, resource.ErrUnknownName):
		httpapi.WriteError(w, http.StatusNotFound, "unknown_name", err.Error())
	case errors.Is(err, resource.ErrNotHolder):
		httpapi.WriteError(w, http.StatusConflict, "not_holder", err.Error())
	case errors.Is(err, resource.ErrLeaseLost):
		httpapi.WriteError(w, http.StatusConflict, "lease_lost", err.Error())
	case errors.Is(err, resource.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		httpapi.WriteUnavailable(w, "unavailable", err.Error(), time.Second)
	default:
		httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}
