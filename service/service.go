package service

import (
	"fmt"
	"time"
)

// Handler handles one request on its service's loop. It must not block: it
// answers with Call.Reply or Call.Fail, now or from a continuation started
// with Call.Go.
type Handler func(c *Call)

// Service is a named set of methods with the resources they use. Build one
// with New and register it on a node (node.Handle).
type Service struct {
	name     string
	methods  map[string]Handler
	uses     []string
	queueLen int
	dedupe   *dedupeConfig
	maxReq   int
}

// MaxRequest sets this service's limit on a request envelope, in bytes
// (default: the host's, 1 MiB), up to the node's message limit.
func (s *Service) MaxRequest(n int) *Service {
	s.maxReq = n
	return s
}

type dedupeConfig struct {
	max int
	age time.Duration
}

// DefaultQueueLen bounds requests waiting on one service's loop.
const DefaultQueueLen = 1024

// New starts the definition of a service.
func New(name string) *Service {
	return &Service{name: name, methods: make(map[string]Handler), queueLen: DefaultQueueLen}
}

// Name is the service's name.
func (s *Service) Name() string { return s.name }

// Method registers a handler for a method name.
func (s *Service) Method(name string, h Handler) *Service {
	s.methods[name] = h
	return s
}

// Uses declares the resources every request of this service needs, for
// admission control: "cpu", "disk", "memory" or any name the application
// gives a limit with Host.SetLimit. A request is refused with *Overloaded
// when any of them is at its limit; services that do not use it go on.
func (s *Service) Uses(resources ...string) *Service {
	s.uses = append(s.uses, resources...)
	return s
}

// QueueLen bounds the requests waiting for this service's loop (default
// 1024); beyond it requests are refused as overloaded on "queue:<name>".
func (s *Service) QueueLen(n int) *Service {
	s.queueLen = n
	return s
}

// Dedupe opts in to idempotence: a duplicate of a request (same request ID)
// that this node has already answered within the window gets the first
// answer again, and a duplicate of one still running waits for its answer;
// the handler runs once. The window holds at most maxEntries answers, none
// older than maxAge. It lives in memory: after a crash, a duplicate may run
// the handler again (see docs/services.md).
func (s *Service) Dedupe(maxEntries int, maxAge time.Duration) *Service {
	s.dedupe = &dedupeConfig{max: maxEntries, age: maxAge}
	return s
}

func (s *Service) validate() error {
	switch {
	case s.name == "" || len(s.name) > MaxNameLen:
		return fmt.Errorf("service: name must be 1 to %d bytes, got %q", MaxNameLen, s.name)
	case len(s.methods) == 0:
		return fmt.Errorf("service %q: no methods registered", s.name)
	case s.queueLen < 1:
		return fmt.Errorf("service %q: QueueLen must be >= 1, got %d", s.name, s.queueLen)
	case s.dedupe != nil && (s.dedupe.max < 1 || s.dedupe.age <= 0):
		return fmt.Errorf("service %q: Dedupe needs maxEntries >= 1 and maxAge > 0, got %d and %v", s.name, s.dedupe.max, s.dedupe.age)
	}
	for m := range s.methods {
		if m == "" || len(m) > MaxNameLen {
			return fmt.Errorf("service %q: method name must be 1 to %d bytes, got %q", s.name, MaxNameLen, m)
		}
	}
	return nil
}
