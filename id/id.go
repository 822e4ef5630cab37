// Package id implements Shoal's 160-bit identifiers on a circular space.
//
// Every node, data key and topic is an ID. IDs are compared numerically
// (big-endian), and distance is measured around the circle: in a 4-bit space
// 0000 and 1111 are neighbours at distance 1. A key is owned by the live node
// whose ID is closest to it; see Closer for the tie-break rule.
package id

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
)

// Bytes is the length of an ID in bytes (160 bits).
const Bytes = 20

// Bits is the length of an ID in bits.
const Bits = Bytes * 8

// DigitBits is the number of bits in one routing digit (Pastry's b).
const DigitBits = 4

// Digits is the number of base-16 digits in an ID.
const Digits = Bits / DigitBits

// ID is a 160-bit identifier, big-endian. The zero value is the ID 0.
type ID [Bytes]byte

// ErrBadID is returned when text or bytes do not spell an ID.
var ErrBadID = errors.New("id: malformed ID")

// Hash maps arbitrary bytes to an ID: the first 160 bits of their SHA-256.
func Hash(b []byte) ID {
	sum := sha256.Sum256(b)
	var x ID
	copy(x[:], sum[:Bytes])
	return x
}

// HashString maps a string key to an ID; HashString(s) == Hash([]byte(s)).
func HashString(s string) ID { return Hash([]byte(s)) }

// FromPublicKey derives a node ID from the canonical encoding of the node's
// public key (for libp2p, the marshalled public key). Anyone holding the key
// presented in the encrypted handshake can check the ID, so a node cannot pick
// its own place on the ring. A domain prefix keeps node IDs and data keys apart.
func FromPublicKey(marshalled []byte) ID {
	h := sha256.New()
	h.Write([]byte("shoal-node-id:"))
	h.Write(marshalled)
	var x ID
	copy(x[:], h.Sum(nil)[:Bytes])
	return x
}

// Parse reads an ID from exactly 40 hex digits (either case).
func Parse(s string) (ID, error) {
	var x ID
	if len(s) != 2*Bytes {
		return x, fmt.Errorf("%w: want %d hex digits, got %d", ErrBadID, 2*Bytes, len(s))
	}
	if _, err := hex.Decode(x[:], []byte(s)); err != nil {
		return x, fmt.Errorf("%w: %v", ErrBadID, err)
	}
	return x, nil
}

// MustParse is Parse for constants in tests and examples; it panics on error.
func MustParse(s string) ID {
	x, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return x
}

// FromBytes copies exactly 20 bytes into an ID.
func FromBytes(b []byte) (ID, error) {
	var x ID
	if len(b) != Bytes {
		return x, fmt.Errorf("%w: want %d bytes, got %d", ErrBadID, Bytes, len(b))
	}
	copy(x[:], b)
	return x, nil
}

// String is the ID as 40 lower-case hex digits.
func (a ID) String() string { return hex.EncodeToString(a[:]) }

// Short is the first 8 hex digits, for logs and tables.
func (a ID) Short() string { return hex.EncodeToString(a[:4]) }

// MarshalText implements encoding.TextMarshaler (40 hex digits).
func (a ID) MarshalText() ([]byte, error) {
	out := make([]byte, 2*Bytes)
	hex.Encode(out, a[:])
	return out, nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *ID) UnmarshalText(b []byte) error {
	x, err := Parse(string(b))
	if err != nil {
		return err
	}
	*a = x
	return nil
}

// Cmp compares a and b as unsigned numbers: -1, 0 or +1.
func (a ID) Cmp(b ID) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Less reports a < b numerically.
func (a ID) Less(b ID) bool { return a.Cmp(b) < 0 }

// Add returns a+b modulo 2^160.
func (a ID) Add(b ID) ID {
	var out ID
	var carry uint16
	for i := Bytes - 1; i >= 0; i-- {
		s := uint16(a[i]) + uint16(b[i]) + carry
		out[i] = byte(s)
		carry = s >> 8
	}
	return out
}

// Sub returns a-b modulo 2^160: the clockwise distance from b to a.
func (a ID) Sub(b ID) ID {
	var out ID
	var borrow int16
	for i := Bytes - 1; i >= 0; i-- {
		d := int16(a[i]) - int16(b[i]) - borrow
		if d < 0 {
			d += 256
			borrow = 1
		} else {
			borrow = 0
		}
		out[i] = byte(d)
	}
	return out
}

// Clockwise returns the distance travelled going clockwise (increasing) from a to b.
func Clockwise(a, b ID) ID { return b.Sub(a) }

// Distance is the circular distance between a and b: the shorter way round.
func Distance(a, b ID) ID {
	cw := b.Sub(a)
	ccw := a.Sub(b)
	if ccw.Less(cw) {
		return ccw
	}
	return cw
}

// Closer reports whether a is strictly closer to key than b under the
// ownership rule: the smaller circular distance wins; on a tie (a and b at
// equal distance on opposite sides of key, which happens only when they are
// symmetric about it) the numerically smaller ID wins. Closer(key, a, a) is false.
func Closer(key, a, b ID) bool {
	switch Distance(key, a).Cmp(Distance(key, b)) {
	case -1:
		return true
	case 1:
		return false
	}
	return a.Less(b)
}

// Between reports whether x lies strictly inside the clockwise arc from a to
// b, excluding both ends. If a == b the arc is the whole circle less a.
func Between(x, a, b ID) bool {
	if a == b {
		return x != a
	}
	return x != a && x.Sub(a).Less(b.Sub(a))
}

// Digit returns the i-th base-16 digit of a, most significant first (0 ≤ i < Digits).
func (a ID) Digit(i int) int {
	b := a[i/2]
	if i%2 == 0 {
		return int(b >> 4)
	}
	return int(b & 0x0f)
}

// WithDigit returns a copy of a with digit i set to d.
func (a ID) WithDigit(i, d int) ID {
	if i%2 == 0 {
		a[i/2] = a[i/2]&0x0f | byte(d<<4)
	} else {
		a[i/2] = a[i/2]&0xf0 | byte(d&0x0f)
	}
	return a
}

// CommonPrefix returns the number of leading base-16 digits a and b share.
func CommonPrefix(a, b ID) int {
	for i := range a {
		if x := a[i] ^ b[i]; x != 0 {
			return 2*i + bits.LeadingZeros8(x)/4
		}
	}
	return Digits
}

// Closest returns the index of the candidate closest to key under Closer,
// or -1 if there are none.
func Closest(key ID, candidates []ID) int {
	best := -1
	for i, c := range candidates {
		if best < 0 || Closer(key, c, candidates[best]) {
			best = i
		}
	}
	return best
}
