package saga

import "context"

// Boundary is a point of a run where a test may crash its runner.
type Boundary = boundary

// SetHook installs f, called by the runner at each boundary with the
// runtime's context; an error stops the runner there, as if it had died.
func (s *Sagas) SetHook(f func(ctx context.Context, b Boundary) error) {
	s.hook.Store(&f)
}
