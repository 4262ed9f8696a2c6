package config

import (
	"errors"
	"os"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error it returns is
// an Errors whose entries carry a position, and that what it accepts also
// passes Validate and parses the same way twice.
func FuzzParse(f *testing.F) {
	full, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	for _, tc := range parseErrorCases {
		f.Add([]byte(tc.yaml))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err == nil {
			if c == nil {
				t.Fatal("nil config and nil error")
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Parse accepted what Validate refuses:\n%v", err)
			}
			again, err := Parse("f.yaml", data)
			if err != nil || !reflect.DeepEqual(c, again) {
				t.Fatalf("a second Parse differs: %v", err)
			}
			return
		}
		if c != nil {
			t.Fatal("a config with an error")
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 || !errors.Is(err, ErrInvalid) {
			t.Fatalf("got %T %v, want a non-empty Errors", err, err)
		}
		for _, e := range es {
			if e.File != "f.yaml" || e.Line < 1 || (e.Column < 1 && e.Path != "") {
				t.Fatalf("error without a position: %#v", e)
			}
		}
		if _, again := Parse("f.yaml", data); again == nil || again.Error() != err.Error() {
			t.Fatalf("a second Parse differs:\n%v\nthen:\n%v", err, again)
		}
	})
}
