package trial

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// WriteJSON writes v as indented JSON to path atomically (temp + rename),
// creating parent directories.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'))
}

// WriteFileAtomic writes data to path via a temporary file and rename so a
// reader never sees a half-written file.
func WriteFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

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
