package id

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// hexID builds an ID from a short hex prefix, padded with pad (a hex digit)
// to 40 digits: hexID("8", '0') is 0x8000…0.
func hexID(prefix string, pad byte) ID {
	return MustParse(prefix + strings.Repeat(string(pad), 2*Bytes-len(prefix)))
}

// small returns the ID whose value is v (v < 2^64).
func small(v uint64) ID {
	var x ID
	for i := Bytes - 1; i >= Bytes-8; i-- {
		x[i] = byte(v)
		v >>= 8
	}
	return x
}

var (
	zero = ID{}
	one  = small(1)
	two  = small(2)
	top  = hexID("", 'f')       // 2^160-1
	half = hexID("8", '0')      // 2^159
	hm1  = hexID("7", 'f')      // 2^159-1
	hp1  = half.Add(one)        // 2^159+1
	mid  = hexID("123456", 'a') // an arbitrary ID
)

func TestCmpAndLess(t *testing.T) {
	tests := []struct {
		a, b ID
		want int
	}{
		{zero, zero, 0},
		{zero, one, -1},
		{one, zero, 1},
		{top, top, 0},
		{top, zero, 1},
		{half, hm1, 1},
		{hm1, half, -1},
		// The first differing byte decides, not the last.
		{hexID("01", '0'), hexID("00", 'f'), 1},
		{small(0x0100), small(0x00ff), 1},
	}
	for _, tc := range tests {
		if got := tc.a.Cmp(tc.b); got != tc.want {
			t.Errorf("%s.Cmp(%s) = %d, want %d", tc.a.Short(), tc.b.Short(), got, tc.want)
		}
		if got := tc.a.Less(tc.b); got != (tc.want < 0) {
			t.Errorf("%s.Less(%s) = %v, want %v", tc.a, tc.b, got, tc.want < 0)
		}
	}
}

func TestAddSub(t *testing.T) {
	tests := []struct {
		name    string
		a, b    ID
		sum     ID // a+b mod 2^160
		diff    ID // a-b mod 2^160
		reverse ID // b-a mod 2^160
	}{
		{"zeros", zero, zero, zero, zero, zero},
		{"one", one, zero, one, one, top},
		{"carry across bytes", small(0xff), one, small(0x100), small(0xfe), top.Sub(small(0xfd))},
		{"wrap on add", top, one, zero, top.Sub(one), two},
		{"wrap top+top", top, top, top.Sub(one), zero, zero},
		{"half+half", half, half, zero, zero, zero},
		{"half±1", hp1, hm1, zero, two, top.Sub(one)},
		{"borrow across all bytes", zero, one, one, top, one},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Add(tc.b); got != tc.sum {
				t.Errorf("%s + %s = %s, want %s", tc.a, tc.b, got, tc.sum)
			}
			if got := tc.b.Add(tc.a); got != tc.sum {
				t.Errorf("Add is not commutative: %s + %s = %s, want %s", tc.b, tc.a, got, tc.sum)
			}
			if got := tc.a.Sub(tc.b); got != tc.diff {
				t.Errorf("%s - %s = %s, want %s", tc.a, tc.b, got, tc.diff)
			}
			if got := tc.b.Sub(tc.a); got != tc.reverse {
				t.Errorf("%s - %s = %s, want %s", tc.b, tc.a, got, tc.reverse)
			}
			if got := tc.a.Sub(tc.b).Add(tc.b); got != tc.a {
				t.Errorf("(a-b)+b = %s, want a = %s", got, tc.a)
			}
		})
	}
}

func TestDistanceAndClockwise(t *testing.T) {
	tests := []struct {
		name    string
		a, b    ID
		dist    ID
		cw, ccw ID // Clockwise(a, b), Clockwise(b, a)
	}{
		// The 4-bit intuition in 160 bits: 0000 and 1111 are neighbours.
		{"0 and top are neighbours", zero, top, one, top, one},
		{"same", mid, mid, zero, zero, zero},
		{"adjacent", one, two, one, one, top},
		{"half way round", zero, half, half, half, half},
		{"just under half", zero, hm1, hm1, hm1, hp1},
		{"just over half goes the other way", zero, hp1, hm1, hp1, hm1},
		{"across the wrap", top.Sub(small(4)), small(5), small(10), small(10), top.Sub(small(9))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Distance(tc.a, tc.b); got != tc.dist {
				t.Errorf("Distance(%s, %s) = %s, want %s", tc.a, tc.b, got, tc.dist)
			}
			if got := Distance(tc.b, tc.a); got != tc.dist {
				t.Errorf("Distance(%s, %s) = %s, want %s (not symmetric)", tc.b, tc.a, got, tc.dist)
			}
			if got := Clockwise(tc.a, tc.b); got != tc.cw {
				t.Errorf("Clockwise(%s, %s) = %s, want %s", tc.a, tc.b, got, tc.cw)
			}
			if got := Clockwise(tc.b, tc.a); got != tc.ccw {
				t.Errorf("Clockwise(%s, %s) = %s, want %s", tc.b, tc.a, got, tc.ccw)
			}
			if got := Clockwise(tc.a, tc.b).Add(Clockwise(tc.b, tc.a)); got != zero {
				t.Errorf("the two ways round sum to %s, want 2^160 ≡ 0", got)
			}
		})
	}
}

func TestBetween(t *testing.T) {
	tests := []struct {
		name    string
		x, a, b ID
		want    bool
	}{
		{"inside", small(5), small(1), small(10), true},
		{"at a (exclusive)", small(1), small(1), small(10), false},
		{"at b (exclusive)", small(10), small(1), small(10), false},
		{"before a", zero, small(1), small(10), false},
		{"after b", small(11), small(1), small(10), false},
		{"wrap: inside past top", top, top.Sub(small(3)), small(3), true},
		{"wrap: inside past zero", zero, top.Sub(small(3)), small(3), true},
		{"wrap: outside", half, top.Sub(small(3)), small(3), false},
		{"reverse arc holds the rest", half, small(10), small(1), true},
		{"reverse arc excludes the short way", small(5), small(10), small(1), false},
		{"a==b: whole circle less a", half, mid, mid, true},
		{"a==b: x==a excluded", mid, mid, mid, false},
		{"a==b at zero", top, zero, zero, true},
		{"adjacent ends: empty arc", two, one, two, false},
	}
	for _, tc := range tests {
		if got := Between(tc.x, tc.a, tc.b); got != tc.want {
			t.Errorf("%s: Between(%s, %s, %s) = %v, want %v", tc.name, tc.x.Short(), tc.a.Short(), tc.b.Short(), got, tc.want)
		}
	}
}

func TestCloser(t *testing.T) {
	key := small(100)
	tests := []struct {
		name      string
		key, a, b ID
		want      bool
	}{
		{"nearer wins", key, small(101), small(90), true},
		{"farther loses", key, small(90), small(101), false},
		{"exact match wins", key, key, small(101), true},
		{"tie: smaller wins", key, small(99), small(101), true},
		{"tie: larger loses", key, small(101), small(99), false},
		{"same node is not closer", key, small(7), small(7), false},
		{"key itself vs itself", key, key, key, false},
		// Tie across the wrap: top and 1 are both at distance 1 from 0;
		// numerically smaller (1) wins even though top is "just before" 0.
		{"tie across wrap: smaller wins", zero, one, top, true},
		{"tie across wrap: larger loses", zero, top, one, false},
		// 0 and 2^159 sit on opposite sides of 2^158, both at distance 2^158.
		{"antipodal tie", hexID("4", '0'), zero, half, true},
		{"wrap makes top nearer to 0 than 2", zero, top, two, true},
	}
	for _, tc := range tests {
		if got := Closer(tc.key, tc.a, tc.b); got != tc.want {
			t.Errorf("%s: Closer(%s, %s, %s) = %v, want %v", tc.name, tc.key.Short(), tc.a, tc.b, got, tc.want)
		}
	}
}

func TestClosestEdgeCases(t *testing.T) {
	if got := Closest(mid, nil); got != -1 {
		t.Fatalf("Closest of no candidates = %d, want -1", got)
	}
	if got := Closest(mid, []ID{top}); got != 0 {
		t.Fatalf("Closest of one candidate = %d, want 0", got)
	}
	// The tie rule decides whatever the order of candidates.
	for _, cands := range [][]ID{{small(101), small(99)}, {small(99), small(101)}} {
		if got := cands[Closest(small(100), cands)]; got != small(99) {
			t.Fatalf("Closest(100, %v) = %s, want 99 (tie goes to the smaller)", cands, got)
		}
	}
	// Duplicates: the first one found is returned.
	if got := Closest(zero, []ID{half, one, one}); got != 1 {
		t.Fatalf("Closest with duplicates = %d, want 1", got)
	}
}

func TestDigits(t *testing.T) {
	x := MustParse("0123456789abcdef0123456789abcdef01234567")
	for i := 0; i < Digits; i++ {
		want := "0123456789abcdef"[i%16]
		if got := "0123456789abcdef"[x.Digit(i)]; got != want {
			t.Fatalf("Digit(%d) = %c, want %c", i, got, want)
		}
	}
	for i := 0; i < Digits; i++ {
		for _, d := range []int{0, 7, 15} {
			y := x.WithDigit(i, d)
			if got := y.Digit(i); got != d {
				t.Fatalf("WithDigit(%d, %d).Digit(%d) = %d", i, d, i, got)
			}
			for j := 0; j < Digits; j++ {
				if j != i && y.Digit(j) != x.Digit(j) {
					t.Fatalf("WithDigit(%d, %d) changed digit %d", i, d, j)
				}
			}
		}
	}
	if x.WithDigit(3, 9); x != MustParse("0123456789abcdef0123456789abcdef01234567") {
		t.Fatal("WithDigit modified its receiver")
	}
}

func TestCommonPrefix(t *testing.T) {
	base := MustParse("0123456789abcdef0123456789abcdef01234567")
	tests := []struct {
		a, b ID
		want int
	}{
		{base, base, Digits},
		{zero, zero, Digits},
		{zero, top, 0},
		{zero, half, 0},
		{zero, hexID("1", '0'), 0},
		{zero, hexID("01", '0'), 1}, // second digit of the first byte differs
		{zero, hexID("001", '0'), 2},
		{zero, one, Digits - 1},
		{base, base.WithDigit(17, 0xf), 17},
		{base, base.WithDigit(0, 0xf), 0},
		{base, base.WithDigit(Digits-1, 0), Digits - 1},
	}
	for _, tc := range tests {
		if got := CommonPrefix(tc.a, tc.b); got != tc.want {
			t.Errorf("CommonPrefix(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CommonPrefix(tc.b, tc.a); got != tc.want {
			t.Errorf("CommonPrefix(%s, %s) = %d, want %d (not symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	const lower = "00112233445566778899aabbccddeeff01234567"
	want := ID{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01, 0x23, 0x45, 0x67}
	for _, s := range []string{lower, strings.ToUpper(lower), "00112233445566778899AaBbCcDdEeFf01234567"} {
		got, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if got != want {
			t.Fatalf("Parse(%q) = %s, want %s", s, got, want)
		}
		if got.String() != lower {
			t.Fatalf("String() = %q, want lower case %q", got.String(), lower)
		}
	}
	if s := want.Short(); s != "00112233" {
		t.Fatalf("Short() = %q", s)
	}

	bad := []struct{ name, in string }{
		{"empty", ""},
		{"too short", lower[:39]},
		{"too long", lower + "0"},
		{"half the bytes", lower[:20]},
		{"non-hex letter", "g" + lower[1:]},
		{"non-hex at end", lower[:39] + "x"},
		{"space", " " + lower[1:]},
		{"0x prefix", "0x" + lower[2:]},
		{"multi-byte rune", "é" + lower[2:]},
		{"binary bytes", string(want[:]) + string(want[:])},
	}
	for _, tc := range bad {
		x, err := Parse(tc.in)
		if err == nil {
			t.Errorf("%s: Parse(%q) = %s, want an error", tc.name, tc.in, x)
			continue
		}
		if !errors.Is(err, ErrBadID) {
			t.Errorf("%s: Parse error %v does not wrap ErrBadID", tc.name, err)
		}
		var y ID
		if err := y.UnmarshalText([]byte(tc.in)); !errors.Is(err, ErrBadID) {
			t.Errorf("%s: UnmarshalText error %v does not wrap ErrBadID", tc.name, err)
		}
		if y != zero {
			t.Errorf("%s: failed UnmarshalText changed the ID to %s", tc.name, y)
		}
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustParse of a bad ID did not panic")
		}
	}()
	MustParse("nope")
}

func TestFromBytes(t *testing.T) {
	b := []byte("0123456789abcdefghij")
	x, err := FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(x[:]) != string(b) {
		t.Fatalf("FromBytes = %x", x[:])
	}
	b[0] = 'X'
	if x[0] != '0' {
		t.Fatal("FromBytes aliases its input")
	}
	for _, n := range []int{0, 19, 21, 32} {
		if _, err := FromBytes(make([]byte, n)); !errors.Is(err, ErrBadID) {
			t.Errorf("FromBytes(%d bytes): err = %v, want ErrBadID", n, err)
		}
	}
}

func TestTextRoundTrip(t *testing.T) {
	for _, x := range []ID{zero, one, top, half, mid, HashString("k")} {
		txt, err := x.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if string(txt) != x.String() {
			t.Fatalf("MarshalText = %q, want %q", txt, x.String())
		}
		var y ID
		if err := y.UnmarshalText(txt); err != nil {
			t.Fatalf("UnmarshalText(%q): %v", txt, err)
		}
		if y != x {
			t.Fatalf("round trip: %s became %s", x, y)
		}
	}
	// IDs travel as JSON strings (map keys too), thanks to the text methods.
	in := map[ID][]ID{mid: {zero, top}}
	js, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"` + mid.String() + `":["` + zero.String() + `","` + top.String() + `"]}`
	if string(js) != want {
		t.Fatalf("json = %s, want %s", js, want)
	}
	var out map[ID][]ID
	if err := json.Unmarshal(js, &out); err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || len(out[mid]) != 2 || out[mid][0] != zero || out[mid][1] != top {
		t.Fatalf("json round trip = %v", out)
	}
	var bad ID
	if err := json.Unmarshal([]byte(`"abc"`), &bad); !errors.Is(err, ErrBadID) {
		t.Fatalf("json.Unmarshal of a short ID: err = %v, want ErrBadID", err)
	}
}

func TestHash(t *testing.T) {
	// SHA-256("") = e3b0c442 98fc1c14 9afbf4c8 996fb924 27ae41e4 649b934c a495991b 7852b855
	if got, want := Hash(nil), MustParse("e3b0c44298fc1c149afbf4c8996fb92427ae41e4"); got != want {
		t.Fatalf("Hash(nil) = %s, want the first 160 bits of SHA-256(\"\") %s", got, want)
	}
	if Hash([]byte("key")) != Hash([]byte("key")) {
		t.Fatal("Hash is not deterministic")
	}
	if HashString("key") != Hash([]byte("key")) {
		t.Fatal("HashString(s) != Hash([]byte(s))")
	}
	if Hash([]byte("key")) == Hash([]byte("key2")) {
		t.Fatal("different inputs hash alike")
	}
	pub := []byte("a marshalled public key")
	if FromPublicKey(pub) == Hash(pub) {
		t.Fatal("FromPublicKey(b) == Hash(b): node IDs and data keys share a space")
	}
	if FromPublicKey(pub) != FromPublicKey(append([]byte(nil), pub...)) {
		t.Fatal("FromPublicKey is not deterministic")
	}
	if FromPublicKey(pub) == FromPublicKey([]byte("another key")) {
		t.Fatal("different keys give the same node ID")
	}
	// The derivation is part of the protocol: SHA-256 of a domain prefix and the key.
	if FromPublicKey(pub) != Hash(append([]byte("shoal-node-id:"), pub...)) {
		t.Fatal("FromPublicKey is not SHA-256 of the domain prefix and the key")
	}
}

func TestConstants(t *testing.T) {
	if Bytes != 20 || Bits != 160 || DigitBits != 4 || Digits != 40 {
		t.Fatalf("Bytes=%d Bits=%d DigitBits=%d Digits=%d", Bytes, Bits, DigitBits, Digits)
	}
}
