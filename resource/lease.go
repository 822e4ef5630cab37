package resource

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shoal-p2p/shoal/kv"
)

// Lease is one grant of a resource to one holder. The holder may act on the
// resource only while Valid(now) is true, and passes Token to every service
// that guards the resource (see Guard).
//
// Renew, KeepAlive and Release update Expires and ValidUntil in place:
// while a KeepAlive runs, read them through Valid and Until, not directly.
type Lease struct {
	Pool, Name string
	Holder     string
	Token      uint64    // fencing token: grows with every grant of this resource
	Expires    time.Time // the expiry as stored (the granting node's clock)
	// ValidUntil is when the holder must stop acting, by its own clock. It
	// equals Expires for leases taken or renewed on this node.
	ValidUntil time.Time

	mu       sync.Mutex // guards Expires, ValidUntil, version, released
	renewMu  sync.Mutex // serialises renewals and release
	m        *Manager
	version  uint64 // kv version of the record as we last wrote or read it
	grant    string
	released bool
	takeover bool // taken from an expired holder
}

func newLease(m *Manager, pool, name string, r record, ver uint64, takeover bool) *Lease {
	return &Lease{Pool: pool, Name: name, Holder: r.Holder, Token: r.Token, Expires: r.expires(), ValidUntil: r.expires(),
		m: m, version: ver, grant: r.Grant, takeover: takeover}
}

// Valid reports whether the holder may still act at now (its own clock).
func (l *Lease) Valid(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.released && now.Before(l.ValidUntil)
}

// Until returns ValidUntil, safely while a KeepAlive runs.
func (l *Lease) Until() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ValidUntil
}

func (l *Lease) update(r record, ver uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.version, l.Expires, l.ValidUntil = ver, r.expires(), r.expires()
}

func (l *Lease) isReleased() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.released
}

func (l *Lease) ver() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.version
}

// renewWith renews the lease through the Manager that granted it.
func (l *Lease) renewWith(ctx context.Context) error {
	l.renewMu.Lock()
	defer l.renewMu.Unlock()
	if l.isReleased() {
		return fmt.Errorf("%w: %s/%s token %d was released", ErrLeaseLost, l.Pool, l.Name, l.Token)
	}
	rec, ver, err := l.m.renew(ctx, l.Pool, l.Name, l.Token, l.ver(), l.Holder, l.grant)
	if err != nil {
		if errors.Is(err, ErrLeaseLost) {
			l.m.st.lost.Add(1)
		}
		return err
	}
	l.update(rec, ver)
	return nil
}

// Renew extends the lease to TTL from now (this node's clock). Errors:
// ErrLeaseLost (a *NotHolderError) if the resource was released or taken
// over; ErrUnavailable if the store could not be reached, in which case
// the lease stays valid until its current ValidUntil.
func (m *Manager) Renew(ctx context.Context, l *Lease) error {
	if l == nil || l.m == nil {
		return fmt.Errorf("%w: not a lease from a Manager", ErrLeaseLost)
	}
	return l.renewWith(ctx)
}

// RenewToken renews the lease of pool/name whose token is token, for a
// holder that kept only the token (an HTTP client). ErrNotHolder if the
// token is not the current holder's.
func (m *Manager) RenewToken(ctx context.Context, pool, name string, token uint64) (*Lease, error) {
	if err := checkName("pool", pool, maxPool); err != nil {
		return nil, err
	}
	if err := checkName("resource", name, maxName); err != nil {
		return nil, err
	}
	rec, ver, err := m.renew(ctx, pool, name, token, 0, "", "")
	if err != nil {
		return nil, m.explainAbsent(ctx, pool, name, err)
	}
	return newLease(m, pool, name, rec, ver, false), nil
}

// renew writes a new expiry for the grant with this token. ver is the
// version the caller believes current (0: read first); holder and grant
// describe the record when known.
func (m *Manager) renew(ctx context.Context, pool, name string, token, ver uint64, holder, grant string) (record, uint64, error) {
	for attempt := 0; ; attempt++ {
		if ver == 0 || holder == "" {
			cur, cver, _, err := m.read(ctx, pool, name)
			if err != nil {
				return record{}, 0, err
			}
			if !cur.held() || cur.Token != token {
				return record{}, 0, &NotHolderError{Pool: pool, Name: name, Token: token, Current: cur.status(name, m.now())}
			}
			ver, holder, grant = cver, cur.Holder, cur.Grant
		}
		nr := record{Holder: holder, Token: token, Expires: m.now().Add(m.cfg.TTL).UnixMilli(), State: StateHeld, Grant: grant}
		nv, err := m.write(ctx, resKey(pool, name), nr.encode(), kv.IfVersion(ver))
		if err == nil {
			m.st.renewed.Add(1)
			return nr, nv, nil
		}
		if !errors.Is(err, kv.ErrVersionMismatch) {
			m.st.unknown.Add(1)
			// Unknown outcome: if our write applied, the record now shows
			// our expiry; adopting it is safe either way, because others
			// wait for the stored expiry.
			cur, cver, _, rerr := m.read(ctx, pool, name)
			if rerr != nil {
				return record{}, 0, storeErr("renew "+pool+"/"+name, err)
			}
			if cur.held() && cur.Token == token && cur.Expires == nr.Expires {
				m.st.renewed.Add(1)
				return cur, cver, nil
			}
		}
		if attempt == 2 {
			return record{}, 0, storeErr("renew "+pool+"/"+name, fmt.Errorf("record kept changing: %w", err))
		}
		ver = 0 // re-read: still ours (a renewal whose answer we missed) or lost?
	}
}

// Release gives the resource back: it becomes free at once, keeping its
// token so the next grant's is higher. The lease is invalid from the call
// on, whatever the outcome. ErrLeaseLost if it was no longer held by this
// lease; ErrUnavailable if the store could not confirm (the lease then
// simply expires).
func (m *Manager) Release(ctx context.Context, l *Lease) error {
	if l == nil || l.m == nil {
		return fmt.Errorf("%w: not a lease from a Manager", ErrLeaseLost)
	}
	l.mu.Lock()
	l.released = true
	l.ValidUntil = time.Time{}
	l.mu.Unlock()
	l.renewMu.Lock()
	defer l.renewMu.Unlock()
	err := m.release(ctx, l.Pool, l.Name, l.Token, l.ver())
	if errors.Is(err, ErrLeaseLost) {
		m.st.lost.Add(1)
	}
	return err
}

// ReleaseToken releases pool/name if token is the current holder's, for a
// holder that kept only the token. Releasing an already released token is
// not an error; any other token gives ErrNotHolder.
func (m *Manager) ReleaseToken(ctx context.Context, pool, name string, token uint64) error {
	if err := checkName("pool", pool, maxPool); err != nil {
		return err
	}
	if err := checkName("resource", name, maxName); err != nil {
		return err
	}
	return m.explainAbsent(ctx, pool, name, m.release(ctx, pool, name, token, 0))
}

func (m *Manager) release(ctx context.Context, pool, name string, token, ver uint64) error {
	nr := record{Token: token, State: StateFree}
	for attempt := 0; ; attempt++ {
		if ver == 0 {
			cur, cver, _, err := m.read(ctx, pool, name)
			if err != nil {
				return err
			}
			if !cur.held() && cur.Token == token && token != 0 {
				return nil // already released (perhaps by our own earlier attempt)
			}
			if !cur.held() || cur.Token != token {
				return &NotHolderError{Pool: pool, Name: name, Token: token, Current: cur.status(name, m.now())}
			}
			ver = cver
		}
		_, err := m.write(ctx, resKey(pool, name), nr.encode(), kv.IfVersion(ver))
		if err == nil {
			m.st.released.Add(1)
			m.log.Debug("lease released", "pool", pool, "name", name, "token", token)
			return nil
		}
		if !errors.Is(err, kv.ErrVersionMismatch) {
			m.st.unknown.Add(1)
		}
		if attempt == 2 {
			return storeErr("release "+pool+"/"+name, err)
		}
		ver = 0 // re-read: released by an attempt whose answer we missed, still ours, or lost?
	}
}

// explainAbsent turns "not holder" on a never-held resource into
// ErrUnknownPool or ErrUnknownName when that is the reason.
func (m *Manager) explainAbsent(ctx context.Context, pool, name string, err error) error {
	var nh *NotHolderError
	if !errors.As(err, &nh) || nh.Current.Token != 0 {
		return err
	}
	if merr := m.checkMember(ctx, pool, name); errors.Is(merr, ErrUnknownPool) || errors.Is(merr, ErrUnknownName) {
		return merr
	}
	return err
}

// KeepAlive renews the lease every TTL/3 (every TTL/12 after a failed
// attempt) until ctx ends or the Manager closes, then closes the channel
// (after a Close, it sends ErrClosed at once).
// If the lease is lost, or it expires because renewals kept failing, it
// sends one error (matching ErrLeaseLost) and closes the channel. The
// holder must stop acting as soon as it receives it; it should also keep
// checking Valid, which covers the time before KeepAlive notices.
func (m *Manager) KeepAlive(ctx context.Context, l *Lease) <-chan error {
	ch := make(chan error, 1)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		ch <- ErrClosed
		close(ch)
		return ch
	}
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		defer close(ch)
		every := m.cfg.TTL / 3
		wait := every
		for {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-m.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			rctx, cancel := context.WithTimeout(ctx, every)
			err := m.Renew(rctx, l)
			cancel()
			switch {
			case err == nil:
				wait = every
				continue
			case ctx.Err() != nil, l.isReleased():
				return
			case errors.Is(err, ErrLeaseLost):
				ch <- err
				return
			}
			if !l.Valid(m.now()) {
				ch <- fmt.Errorf("%w: %s/%s token %d expired at %s before it could be renewed: %w", ErrLeaseLost, l.Pool, l.Name, l.Token, l.Until().Format(time.RFC3339Nano), err)
				return
			}
			wait = every / 4
		}
	}()
	return ch
}
