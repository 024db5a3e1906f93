package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConvertDirPrintsATableAndWritesAccepted(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	res := `{"samples": [{"epoch": 1770426000, "mem_usage": "100MB / 1GB", "cpu_percent": "5%"}]}`
	for name, calls := range map[string]string{
		// parallel calls listed as they completed: the first listed is not the earliest
		"parallel": `[{"timestamp": "2026-02-07T01:00:01.000Z", "end_timestamp": "2026-02-07T01:00:01.400Z", "tool": "Glob"},
		              {"timestamp": "2026-02-07T01:00:00.500Z", "end_timestamp": "2026-02-07T01:00:01.450Z", "tool": "Grep"}]`,
		"swapped": `[{"timestamp": "2026-02-07T01:00:02.000Z", "end_timestamp": "2026-02-07T01:00:01.000Z", "tool": "Bash"}]`,
	} {
		d := filepath.Join(in, name)
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, "tool_calls.json"), []byte(calls), 0o644)
		os.WriteFile(filepath.Join(d, "resources.json"), []byte(res), 0o644)
	}
	var buf bytes.Buffer
	err := convertDir(&buf, in, out, "test/{name}", "GPL-2.0")
	if err == nil || !strings.Contains(err.Error(), "1 of 2 recordings rejected") {
		t.Errorf("error %v, want one rejected", err)
	}
	table := buf.String()
	rows := map[string]string{}
	for _, l := range strings.Split(table, "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			rows[f[0]] = strings.Join(f[1:], " ")
		}
	}
	// calls, overlapping, listed out of order, most at once, span
	if r := rows["parallel"]; r != "accepted 2 2 1 2 0.9" {
		t.Errorf("parallel row %q:\n%s", r, table)
	}
	if r := rows["swapped"]; !strings.HasPrefix(r, "rejected tool_calls.json call 0 (Bash)") || !strings.Contains(r, "negative duration") {
		t.Errorf("swapped row %q:\n%s", r, table)
	}
	if !strings.Contains(table, "2 recordings: 1 accepted") {
		t.Errorf("no summary line:\n%s", table)
	}
	if _, err := os.Stat(filepath.Join(out, "parallel.json")); err != nil {
		t.Errorf("accepted recording not written: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "swapped.json")); err == nil {
		t.Error("rejected recording written")
	}
}
