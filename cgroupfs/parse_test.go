package cgroupfs

import (
	"strings"
	"testing"
	"time"
)

func TestParseFlatKeyed(t *testing.T) {
	in := "low 0\nhigh 102\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n"
	m, err := ParseFlatKeyed("memory.events", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if m["high"] != 102 || m["max"] != 3 || m["oom_kill"] != 1 || len(m) != 6 {
		t.Fatalf("got %v", m)
	}
}

func TestParseFlatKeyedErrorsNameFileAndLine(t *testing.T) {
	for _, in := range []string{"high 1\nmax x\n", "high 1\nmax\n", "a 1 2\n"} {
		_, err := ParseFlatKeyed("memory.events", strings.NewReader(in))
		if err == nil {
			t.Fatalf("%q: no error", in)
		}
		if !strings.Contains(err.Error(), "memory.events line") {
			t.Errorf("%q: error %q does not name file and line", in, err)
		}
	}
}

func TestParsePressure(t *testing.T) {
	in := "some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.75 avg60=0.00 avg300=0.00 total=42\n"
	p, err := ParsePressure("memory.pressure", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if p.Some.Avg10 != 1.5 || p.Some.Avg60 != 0.25 || p.Some.Total != 123456*time.Microsecond {
		t.Fatalf("some: %+v", p.Some)
	}
	if p.Full.Avg10 != 0.75 || p.Full.Total != 42*time.Microsecond {
		t.Fatalf("full: %+v", p.Full)
	}
	// cpu.pressure at the root has only a "some" line.
	p, err = ParsePressure("cpu.pressure", strings.NewReader("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"))
	if err != nil || p.Some.Total != 7*time.Microsecond || p.Full != (PressureLine{}) {
		t.Fatalf("%+v %v", p, err)
	}
	for _, bad := range []string{"", "full avg10=0 avg60=0 avg300=0 total=0\n", "some avg10=x avg60=0 avg300=0 total=0\n", "some avg10=0 avg60=0 avg300=0\n", "some avg10\n"} {
		if _, err := ParsePressure("memory.pressure", strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "memory.pressure") {
			t.Errorf("%q: want an error naming memory.pressure, got %v", bad, err)
		}
	}
}

func TestParseNestedKeyedIOStat(t *testing.T) {
	in := "254:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n"
	m, err := ParseNestedKeyed("io.stat", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if m["254:0"]["rbytes"] != "4096" || m["8:0"]["wbytes"] != "20" || len(m) != 2 {
		t.Fatalf("got %v", m)
	}
}
