package latency

import (
	"bytes"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

func TestRecorderIntervalsAndValues(t *testing.T) {
	base := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	r, err := New(&buf, base, time.Second, "test")
	if err != nil {
		t.Fatal(err)
	}
	// 3 values in second 0, none in second 1, 2 in second 2.
	r.Record(base, base.Add(500*time.Microsecond))
	r.Record(base.Add(100*time.Millisecond), base.Add(300*time.Millisecond))
	r.Record(base.Add(200*time.Millisecond), base.Add(200*time.Millisecond)) // 0 -> 1 us
	r.Record(base.Add(2*time.Second), base.Add(2*time.Second+7*time.Millisecond))
	r.Record(base.Add(2100*time.Millisecond), base.Add(2500*time.Millisecond))
	r.Fail()
	if err := r.Close(base.Add(2600 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if r.Count() != 5 || r.Failed() != 1 {
		t.Fatalf("count %d failed %d", r.Count(), r.Failed())
	}
	rd := hdrhistogram.NewHistogramLogReader(bytes.NewReader(buf.Bytes()))
	var got []*hdrhistogram.Histogram
	for {
		h, err := rd.NextIntervalHistogram()
		if err != nil {
			t.Fatal(err)
		}
		if h == nil {
			break
		}
		got = append(got, h)
	}
	if len(got) != 2 {
		t.Fatalf("%d intervals, want 2 (empty seconds are not written)", len(got))
	}
	if got[0].TotalCount() != 3 || got[1].TotalCount() != 2 {
		t.Errorf("interval counts %d, %d", got[0].TotalCount(), got[1].TotalCount())
	}
	if got[0].Min() != 1 || !got[0].ValuesAreEquivalent(got[0].Max(), 200_000) {
		t.Errorf("interval 0 min %d max %d, want 1 and 200000 us", got[0].Min(), got[0].Max())
	}
	if !got[1].ValuesAreEquivalent(got[1].Max(), 400_000) {
		t.Errorf("interval 1 max %d, want 400000 us", got[1].Max())
	}
}
