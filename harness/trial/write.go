package trial

import (
	"fmt"
	"io"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// IntervalLog writes a victim's latency histograms, one per interval, in
// HdrHistogram's interval log format with times relative to Base.
type IntervalLog struct {
	w    *hdrhistogram.HistogramLogWriter
	base time.Time
}

// NewIntervalLog writes the log header; base is the measure phase's start.
func NewIntervalLog(w io.Writer, base time.Time, comment string) (*IntervalLog, error) {
	lw := hdrhistogram.NewHistogramLogWriter(w)
	if err := lw.OutputLogFormatVersion(); err != nil {
		return nil, err
	}
	if comment != "" {
		if err := lw.OutputComment(comment); err != nil {
			return nil, err
		}
	}
	if err := lw.OutputStartTime(base.UnixMilli()); err != nil {
		return nil, err
	}
	if err := lw.OutputBaseTime(base.UnixMilli()); err != nil {
		return nil, err
	}
	lw.SetBaseTime(base.UnixMilli())
	if err := lw.OutputLegend(); err != nil {
		return nil, err
	}
	return &IntervalLog{w: lw, base: base}, nil
}

// Write logs h as the interval [start, end); values are microseconds.
func (l *IntervalLog) Write(h *hdrhistogram.Histogram, start, end time.Time) error {
	h.SetStartTimeMs(start.UnixMilli())
	h.SetEndTimeMs(end.UnixMilli())
	// The interval line's max column assumes ns values (it divides by
	// 1e6); it is informational only, the encoded payload is exact.
	if err := l.w.OutputIntervalHistogram(h); err != nil {
		return fmt.Errorf("histogram log: %w", err)
	}
	return nil
}
