package apt

import (
	"errors"
	"strings"
	"testing"
)

func TestParseStanzas(t *testing.T) {
	text := `Package: stress-ng
Version: 0.19.02-1
Architecture: amd64
Depends: libc6 (>= 2.39), libgbm1 (>= 8.1~0)
Description: a tool
 spanning lines
SHA256: ab

Package: python3
Version: 3.13.5-1
Architecture: amd64
Provides: python3-profiler, python3-supported-min (= 3.13)
`
	ss := ParseStanzas(text)
	if len(ss) != 2 {
		t.Fatalf("%d stanzas, want 2", len(ss))
	}
	if p := ss[0].Package(); p != (Package{Name: "stress-ng", Version: "0.19.02-1", Arch: "amd64", SHA256: "ab"}) {
		t.Errorf("first: %+v", p)
	}
	if ss[0]["Description"] != "a tool\nspanning lines" {
		t.Errorf("continuation lines: %q", ss[0]["Description"])
	}
	if ss[1]["Provides"] != "python3-profiler, python3-supported-min (= 3.13)" {
		t.Errorf("Provides: %q", ss[1]["Provides"])
	}
}

func TestCheckName(t *testing.T) {
	for name, want := range map[string]string{
		"stress-ng":       "",
		"rt-tests":        "",
		"libstdc++6":      "",
		"stress-ng=0.19":  "bare package name",
		"stress-ng:amd64": "bare package name",
		"Stress":          "not a Debian package name",
		"x":               "not a Debian package name",
		"":                "not a Debian package name",
	} {
		got := CheckName(name)
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("CheckName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestNotFoundNamesThePackage(t *testing.T) {
	a := &Apt{suite: Suite{URL: "http://deb.example/debian", Suite: "s", Component: "main"}}
	err := a.notFound(errors.New("apt-get download foo=1 bar=2: exit status 100: E: Version '2' for 'bar' was not found"), []string{"foo=1", "bar=2"})
	if !errors.Is(err, ErrNotFound) || !strings.HasPrefix(err.Error(), "bar=2: ") {
		t.Errorf("got %v, want an ErrNotFound naming bar=2 only", err)
	}
	other := errors.New("apt-get download foo=1: exit status 100: E: Failed to fetch http://deb.example/x 503")
	if err := a.notFound(other, []string{"foo=1"}); err != other {
		t.Errorf("a failed fetch is not a missing package: %v", err)
	}
}
