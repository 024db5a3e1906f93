// Package latency records victim latencies into HdrHistogram interval logs.
// Every latency is measured from the moment the work was *supposed* to start
// (its slot in an open-loop schedule), not from when the loop got round to
// it: a stall that delays later requests shows up in all of them instead of
// being hidden (coordinated omission).
package latency

import (
	"io"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// DefaultInterval is the span of one histogram in the log.
const DefaultInterval = time.Second

// Recorder accumulates latencies and writes one histogram per interval.
type Recorder struct {
	log      *trial.IntervalLog
	every    time.Duration
	cur      *hdrhistogram.Histogram
	curStart time.Time
	count    int64
	failed   int64
	max      time.Duration
	err      error
}

// New starts a recorder whose intervals are aligned to base.
func New(w io.Writer, base time.Time, every time.Duration, comment string) (*Recorder, error) {
	if every <= 0 {
		every = DefaultInterval
	}
	lg, err := trial.NewIntervalLog(w, base, comment)
	if err != nil {
		return nil, err
	}
	return &Recorder{log: lg, every: every, cur: trial.NewLatencyHistogram(), curStart: base}, nil
}

// Record adds one completed operation: intended is its scheduled start,
// done its completion. Latencies below 1 us count as 1 us.
func (r *Recorder) Record(intended, done time.Time) {
	r.rotate(done)
	d := done.Sub(intended)
	if d > r.max {
		r.max = d
	}
	us := d.Microseconds()
	if us < trial.HistMinUS {
		us = trial.HistMinUS
	}
	if us > trial.HistMaxUS {
		us = trial.HistMaxUS
	}
	if err := r.cur.RecordValue(us); err != nil && r.err == nil {
		r.err = err
	}
	r.count++
}

// Fail counts an operation that did not complete (it is not in the
// histogram).
func (r *Recorder) Fail() { r.failed++ }

// Count is the number of recorded latencies.
func (r *Recorder) Count() int64 { return r.count }

// Failed is the number of failed operations.
func (r *Recorder) Failed() int64 { return r.failed }

// Max is the largest latency recorded.
func (r *Recorder) Max() time.Duration { return r.max }

func (r *Recorder) rotate(now time.Time) {
	for !now.Before(r.curStart.Add(r.every)) {
		r.flush(r.curStart.Add(r.every))
	}
}

func (r *Recorder) flush(end time.Time) {
	if r.cur.TotalCount() > 0 {
		if err := r.log.Write(r.cur, r.curStart, end); err != nil && r.err == nil {
			r.err = err
		}
		r.cur = trial.NewLatencyHistogram()
	}
	r.curStart = end
}

// Close writes the last partial interval, ending at end.
func (r *Recorder) Close(end time.Time) error {
	r.rotate(end)
	if end.Before(r.curStart) {
		end = r.curStart
	}
	r.flush(end)
	return r.err
}
