package id_test

import (
	"fmt"

	"github.com/shoal-p2p/shoal/id"
)

func ExampleDistance() {
	// Distance goes the short way round: the first and last IDs are neighbours.
	lo := id.MustParse("0000000000000000000000000000000000000000")
	hi := id.MustParse("ffffffffffffffffffffffffffffffffffffffff")
	fmt.Println(id.Distance(lo, hi))
	fmt.Println(id.Clockwise(lo, hi))
	// Output:
	// 0000000000000000000000000000000000000001
	// ffffffffffffffffffffffffffffffffffffffff
}

func ExampleCloser() {
	key := id.MustParse("0000000000000000000000000000000000000010")
	a := id.MustParse("000000000000000000000000000000000000000f")
	b := id.MustParse("0000000000000000000000000000000000000011")
	// a and b are both at distance 1: the numerically smaller one wins.
	fmt.Println(id.Closer(key, a, b), id.Closer(key, b, a), id.Closer(key, a, a))
	// Output: true false false
}

func ExampleClosest() {
	key := id.HashString("user:42")
	nodes := []id.ID{
		id.MustParse("1000000000000000000000000000000000000000"),
		id.MustParse("8000000000000000000000000000000000000000"),
		id.MustParse("f000000000000000000000000000000000000000"),
	}
	fmt.Println(key.Short())
	fmt.Println(nodes[id.Closest(key, nodes)].Short())
	fmt.Println(id.Closest(key, nil))
	// Output:
	// ea3fd43b
	// f0000000
	// -1
}

func ExampleBetween() {
	a := id.MustParse("f000000000000000000000000000000000000000")
	b := id.MustParse("1000000000000000000000000000000000000000")
	zero := id.ID{}
	// The arc from a clockwise to b wraps past zero.
	fmt.Println(id.Between(zero, a, b), id.Between(zero, b, a), id.Between(a, a, b))
	// Output: true false false
}

func ExampleParse() {
	x, err := id.Parse("00112233445566778899AABBCCDDEEFF00112233")
	fmt.Println(x, err)
	_, err = id.Parse("0011")
	fmt.Println(err)
	// Output:
	// 00112233445566778899aabbccddeeff00112233 <nil>
	// id: malformed ID: want 40 hex digits, got 4
}

func ExampleHashString() {
	// Data keys are hashed into the ID space; node IDs come from public keys
	// under a separate domain, so the two never collide by construction.
	fmt.Println(id.HashString("hello").Short())
	fmt.Println(id.FromPublicKey([]byte("hello")).Short())
	// Output:
	// 2cf24dba
	// 243c3b7a
}

func ExampleCommonPrefix() {
	self := id.MustParse("a3f0000000000000000000000000000000000000")
	other := id.MustParse("a3e0000000000000000000000000000000000000")
	r := id.CommonPrefix(self, other)
	// other belongs in row r of self's routing table, column other.Digit(r).
	fmt.Println(r, other.Digit(r), self.WithDigit(r, 0xe) == other)
	// Output: 2 14 true
}
