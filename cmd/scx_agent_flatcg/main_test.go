package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf/flatcg"
)

func TestBadFlagsNameTheFix(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-thrash-threshold", "2000"}, "1..1000"},
		{[]string{"-thrash-penalty", "1.5"}, "(0, 1]"},
		{[]string{"extra"}, "all options are flags"},
		{[]string{"-slice", "1us"}, "100us..1s"},
	} {
		err := run(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestPrintStatsRates(t *testing.T) {
	prev := map[uint64]flatcg.CgroupStats{7: {ID: 7}}
	cur := map[uint64]flatcg.CgroupStats{7: {ID: 7, Weight: 100, Active: true,
		Stats: flatcg.Stats{RuntimeNs: uint64(time.Second), Enqueues: 20, ThrottledNs: uint64(250 * time.Millisecond)}}}
	var sb strings.Builder
	printStats(&sb, prev, cur, 2*time.Second)
	out := sb.String()
	for _, want := range []string{"50.0", "10", "250ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats output lacks %q:\n%s", want, out)
		}
	}
}
