package arbiter

import (
	"fmt"
	"strings"
	"testing"
)

func TestTemplateMasks(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"conn 17 to 10.0.0.3 reset after 250ms", "conn <num> to <num> reset after <num>ms"},
		{"took 1.5e3 us, -4 retries", "took <num> us, -<num> retries"},
		{"ptr 0xdeadBEEF freed", "ptr <hex> freed"},
		{"commit 3f9a2b7c4e1d", "commit <hex>"},
		{"req 123e4567-e89b-12d3-a456-426614174000 done", "req <uuid> done"},
		{`open "/tmp/x 1.txt" failed: 'no such file'`, `open "<str>" failed: '<str>'`},
		{`msg="it said \"hi 2\"" ok`, `msg="<str>" ok`},
		{"worker-42 restarted (pid 9131)", "worker-<num> restarted (pid <num>)"},
		{"user_8f3k2 logged in", "user_<id> logged in"},
		{"can't reach db at 10:42:01", "can't reach db at <num>:<num>:<num>"},
		{"GET /v1/items/981 -> 404", "GET /<id>/items/<num> -> <num>"},
		{"plain words only.", "plain words only."},
		{"", ""},
	} {
		if got := Template(c.in); got != c.want {
			t.Errorf("Template(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestTemplateGroupsVariants(t *testing.T) {
	a := Template(`dial tcp 10.1.2.3:8080: connect: connection refused (attempt 3, id 7f3a9c21)`)
	b := Template(`dial tcp 10.9.9.1:8443: connect: connection refused (attempt 11, id 0b1c2d3e)`)
	if a != b {
		t.Errorf("variants of one message differ:\n%q\n%q", a, b)
	}
}

func TestTemplateLongLine(t *testing.T) {
	long := strings.Repeat("é", 400) + " 12345"
	got := Template(long)
	if strings.ContainsAny(got, "0123456789") {
		t.Errorf("digits left in %q", got)
	}
	if !strings.HasPrefix(got, "é") || len(got) > maxTemplateInput+8 {
		t.Errorf("long line templated to %d bytes", len(got))
	}
}

func TestTemplaterRarityAndBound(t *testing.T) {
	tp := NewTemplater(8)
	_, r0 := tp.Observe("cache miss for key 1")
	_, r1 := tp.Observe("cache miss for key 2")
	if r0 != 1 || r1 >= r0 {
		t.Errorf("rarity of a new template %v, then %v: want 1 then less", r0, r1)
	}
	for i := range 200 {
		tp.Observe("cache miss for key " + fmt.Sprint(i))
	}
	if _, r := tp.Observe("cache miss for key 9"); r > 0.2 {
		t.Errorf("a common template still rare: %v", r)
	}
	for i := range 100 {
		tp.Observe(fmt.Sprintf("unique message %c%c", 'a'+i%26, 'a'+i/26))
	}
	if tp.Len() > 8 {
		t.Errorf("templater holds %d templates, bound 8", tp.Len())
	}
	if _, r := tp.Observe("cache miss for key 3"); r != 1 {
		t.Errorf("an evicted template should be new again, rarity %v", r)
	}
}

// FuzzTemplate: templating never panics, never leaves a digit, and is
// idempotent on lines short enough not to be cut.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"conn 17 to 10.0.0.3 reset after 250ms",
		`open "/tmp/x" failed: 'no'`,
		"0x1f 123e4567-e89b-12d3-a456-426614174000 -5 1e-9 a1b2",
		`unterminated "quote 12`, "it's 3 o'clock", "-", "\xff\xfe1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		out := Template(line)
		if strings.ContainsAny(out, "0123456789") {
			t.Fatalf("digit left: %q -> %q", line, out)
		}
		if len(line) <= 100 {
			if again := Template(out); again != out {
				t.Fatalf("not idempotent: %q -> %q -> %q", line, out, again)
			}
		}
	})
}
