package telemetry

import (
	"testing"
	"time"
)

func TestParsePressure(t *testing.T) {
	p, err := parsePressure([]byte("some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=42\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Pressure{
		Some: PressureLine{Avg10: 1.5, Avg60: 0.25, Total: 123456 * time.Microsecond},
		Full: PressureLine{Avg10: 0.5, Total: 42 * time.Microsecond},
	}
	if p != want {
		t.Errorf("got %+v, want %+v", p, want)
	}

	// CPU on kernels before 5.13 has no full line.
	if _, err := parsePressure([]byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")); err != nil {
		t.Errorf("some-only file: %v", err)
	}

	for _, bad := range []string{
		"",
		"full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		"some avg10=x avg60=0.00 avg300=0.00 total=0\n",
		"some avg10=101 avg60=0.00 avg300=0.00 total=0\n",
		"some avg10\n",
		"other avg10=0\n",
		"some total=-1\n",
	} {
		if _, err := parsePressure([]byte(bad)); err == nil {
			t.Errorf("parsePressure(%q) succeeded", bad)
		}
	}
}

func FuzzParsePressure(f *testing.F) {
	f.Add([]byte("some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=42\n"))
	f.Add([]byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"))
	f.Add([]byte("some total=18446744073709551615\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePressure(b)
		if err != nil {
			return
		}
		for _, l := range []PressureLine{p.Some, p.Full} {
			for _, avg := range []float64{l.Avg10, l.Avg60, l.Avg300} {
				if avg < 0 || avg > 100 || avg != avg {
					t.Fatalf("average %v out of [0, 100] from %q", avg, b)
				}
			}
			if l.Total < 0 {
				t.Fatalf("negative total %v from %q", l.Total, b)
			}
		}
	})
}
