package resource

import "sync"

// Guard is the fencing check a service that acts on a resource puts in
// front of every action: it remembers the highest token it has accepted
// for each resource and refuses lower ones. A holder whose lease was
// superseded — it paused past its expiry, or its message was delayed — is
// then refused as soon as the new holder has acted once, even though the
// old holder believed it was still valid when it sent the action. New
// holders should act (or call Check) once right after acquiring, so the
// fence is raised before any late message from the old holder arrives.
//
// Guard keeps one entry per resource it has seen, in memory: a service
// that restarts must persist the highest tokens (or refuse everything
// until every holder has acquired again). It is safe for concurrent use.
type Guard struct {
	mu   sync.Mutex
	seen map[guardKey]uint64
}

type guardKey struct{ pool, name string }

// NewGuard returns an empty Guard.
func NewGuard() *Guard { return &Guard{seen: map[guardKey]uint64{}} }

// Check accepts an action on pool/name by the holder of token, unless a
// higher token has already been accepted (ErrStaleToken, a
// *StaleTokenError). An accepted token becomes the new floor. Token 0 is
// never granted and always refused.
func (g *Guard) Check(pool, name string, token uint64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := guardKey{pool, name}
	seen := g.seen[k]
	if token == 0 || token < seen {
		return &StaleTokenError{Pool: pool, Name: name, Token: token, Seen: seen}
	}
	g.seen[k] = token
	return nil
}

// Seen returns the highest token accepted for pool/name (0: none).
func (g *Guard) Seen(pool, name string) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seen[guardKey{pool, name}]
}
