package resource

import (
	"reflect"
	"testing"
)

func FuzzDecodeRecord(f *testing.F) {
	for _, s := range []string{
		`{"holder":"n1/a","token":3,"expires":1700000000000,"state":"held","grant":"ab"}`,
		`{"token":3,"state":"free"}`,
		`{"token":18446744073709551615,"state":"free"}`,
		`{"token":1,"Token":2,"state":"free"}`,
		`{"token":1,"token":2,"state":"free"}`,
		`{"state":"held","holder":"x","token":1,"expires":1}{}`,
		`{"state":"held","holder":"x","token":1e30,"expires":1}`,
		`[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`,
		`null`, ``, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		back, err := decodeRecord(r.encode())
		if err != nil || !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip of %q: %+v -> %+v, %v", b, r, back, err)
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	for _, s := range []string{`{"names":["a","b"]}`, `{"names":["b","a"]}`, `{"names":["a","a"]}`, `{"names":null}`, `{"Names":["a"]}`, `{"names":["a/b"]}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		back, err := decodeMeta(m.encode())
		if err != nil || len(back.Names) != len(m.Names) {
			t.Fatalf("round trip of %q: %+v -> %+v, %v", b, m, back, err)
		}
	})
}

func TestDecodeRecord(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"holder":"n1/a","token":3,"expires":1700000000000,"state":"held","grant":"ab"}`, true},
		{`{"token":0,"state":"free"}`, true},
		{`{"token":1,"Token":2,"state":"free"}`, false},                // case-folded duplicate
		{`{"token":1,"token":2,"state":"free"}`, false},                // duplicate
		{`{"token":1,"state":"free","extra":1}`, false},                // unknown key
		{`{"token":1,"state":"free"} {}`, false},                       // two values
		{`{"token":1,"state":"gone"}`, false},                          // unknown state
		{`{"token":1,"state":"held","expires":5}`, false},              // no holder
		{`{"token":0,"state":"held","expires":5,"holder":"a"}`, false}, // token 0 held
		{`{"token":1,"state":"free","holder":"a"}`, false},             // free with holder
		{`{"token":1,"state":"held","expires":5,"holder":"a b"}`, false},
		{`{"token":-1,"state":"free"}`, false},
		{`{"token":1.5,"state":"free"}`, false},
		{`null`, false},
	} {
		_, err := decodeRecord([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("decodeRecord(%s) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}
