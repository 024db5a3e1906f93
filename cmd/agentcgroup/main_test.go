package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	sock := t.TempDir() + "/none.sock"
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 2, "usage:"},
		{[]string{"frobnicate"}, 2, "usage:"},
		{[]string{"session", "start"}, 2, "exactly one ID"},
		{[]string{"session", "start", "s1", "--label", "novalue"}, 2, "name=value"},
		{[]string{"step", "run", "--session", "s1", "--", "true"}, 2, "--class"},
		{[]string{"step", "run", "--session", "s1", "--class", "tool_burst"}, 2, "command after --"},
		{[]string{"step", "run", "--session", "s1", "--class", "tool_burst", "--", "/no/such/binary"}, 127, "no such file"},
		{[]string{"--socket", sock, "status"}, 1, "is the daemon running"},
		{[]string{"--socket", sock, "session", "start", "s1"}, 1, "is the daemon running"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.want)
		}
	}
}
