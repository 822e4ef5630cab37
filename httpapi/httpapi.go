// Package httpapi is the HTTP API every node can serve (`shoal node --http
// ADDR`). Subsystems register their routes on a Server; errors are JSON
// {"error": "...", "code": "..."} with fitting status codes.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-p2p/shoal/id"
	"github.com/shoal-p2p/shoal/node"
	"github.com/shoal-p2p/shoal/ring"
	"github.com/shoal-p2p/shoal/transport"
)

// Server is a node's HTTP API.
type Server struct {
	n   *node.Node
	mux *http.ServeMux
	log *slog.Logger
	srv *http.Server
	ln  net.Listener

	closing   chan struct{} // closed when Close starts
	closeOnce sync.Once

	routesMu sync.Mutex
	routes   []string // registered patterns, named in the answer to an unknown route
}

// New returns a server for n with the ring routes registered. Other
// subsystems add theirs with Handle before Start.
func New(n *node.Node, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{n: n, mux: http.NewServeMux(), log: log.With("subsys", "http"), closing: make(chan struct{})}
	s.Handle("GET /v1/ring", s.ring)
	s.Handle("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]any{"ok": true, "id": n.ID()})
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.routesMu.Lock()
		routes := strings.Join(s.routes, ", ")
		s.routesMu.Unlock()
		WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route %s %s; this node serves %s", r.Method, r.URL.Path, routes))
	})
	return s
}

// Node is the node the server serves.
func (s *Server) Node() *node.Node { return s.n }

// Handle registers a route pattern (Go 1.22 ServeMux syntax).
func (s *Server) Handle(pattern string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, h)
	s.routesMu.Lock()
	s.routes = append(s.routes, pattern)
	s.routesMu.Unlock()
}

// Start listens on addr (e.g. 127.0.0.1:8080) and serves in the background.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http: listen on %s: %w", addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the address the server listens on (after Start).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Closing is closed when Close starts. Long-lived responses (event
// streams) end on it: http.Server.Shutdown waits for them otherwise.
func (s *Server) Closing() <-chan struct{} { return s.closing }

// Close stops the server, waiting up to ctx for requests in flight. It ends
// event streams first (see Closing).
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.closing) })
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// Handler exposes the mux (for tests with httptest).
func (s *Server) Handler() http.Handler { return s.mux }

// WriteJSON writes v as JSON with the status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Error is the JSON body of every error response.
type Error struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// WriteError writes {"error": msg, "code": code}.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	WriteJSON(w, status, Error{Error: msg, Code: code})
}

// WriteUnavailable writes a 503 with a Retry-After header (whole seconds,
// at least 1).
func WriteUnavailable(w http.ResponseWriter, code, msg string, retryAfter time.Duration) {
	secs := int(retryAfter.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	WriteError(w, http.StatusServiceUnavailable, code, msg)
}

// RingInfo is the body of GET /v1/ring.
type RingInfo struct {
	ID               id.ID            `json:"id"`
	Addrs            []string         `json:"addrs"`
	Ready            bool             `json:"ready"`
	Sure             bool             `json:"sure"`
	LeafLeft         []transport.Peer `json:"leaf_left"`
	LeafRight        []transport.Peer `json:"leaf_right"`
	RoutingTableSize int              `json:"routing_table_size"`
	Owns             ring.Range       `json:"owns"`
	Metrics          node.Metrics     `json:"metrics"`
}

func (s *Server) ring(w http.ResponseWriter, r *http.Request) {
	st, err := s.n.Status(r.Context())
	if err != nil {
		WriteUnavailable(w, "node_closed", err.Error(), time.Second)
		return
	}
	self := s.n.Self()
	if st.Left == nil {
		st.Left = []transport.Peer{}
	}
	if st.Right == nil {
		st.Right = []transport.Peer{}
	}
	WriteJSON(w, http.StatusOK, RingInfo{
		ID: self.ID, Addrs: self.Addrs, Ready: st.Ready, Sure: st.Sure,
		LeafLeft: st.Left, LeafRight: st.Right, RoutingTableSize: st.TableSize,
		Owns: st.Range, Metrics: s.n.Metrics(),
	})
}
