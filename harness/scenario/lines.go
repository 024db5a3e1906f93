package scenario

import (
	"regexp"
	"strconv"
	"strings"
)

// lineIndex maps a key path ("guest.mem", "victims[1].kind") to the line it
// is written on. The TOML library keeps positions private, so this is a
// small line scanner over the same text: table headers, array-of-table
// headers (counted to give indices) and "key = value" lines. Inline tables
// and multi-line values resolve to the line of their key.
type lineIndex map[string]int

var (
	arrayHeaderRe = regexp.MustCompile(`^\s*\[\[\s*([^\]]+?)\s*\]\]`)
	tableHeaderRe = regexp.MustCompile(`^\s*\[\s*([^\]]+?)\s*\]`)
	keyLineRe     = regexp.MustCompile(`^\s*([A-Za-z0-9_\-."' ]+?)\s*=`)
)

func indexLines(text string) lineIndex {
	idx := lineIndex{}
	counts := map[string]int{} // array table -> entries seen so far
	prefix := ""
	inMultiline := ""
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if inMultiline != "" {
			if strings.Count(line, inMultiline)%2 == 1 {
				inMultiline = ""
			}
			continue
		}
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if m := arrayHeaderRe.FindStringSubmatch(line); m != nil {
			name := withIndices(cleanKey(m[1]), counts, true)
			prefix = name
			idx.put(name, n)
			continue
		}
		if m := tableHeaderRe.FindStringSubmatch(line); m != nil {
			name := withIndices(cleanKey(m[1]), counts, false)
			prefix = name
			idx.put(name, n)
			continue
		}
		if m := keyLineRe.FindStringSubmatch(line); m != nil {
			key := cleanKey(m[1])
			if prefix != "" {
				key = prefix + "." + key
			}
			idx.put(key, n)
			for _, q := range []string{`"""`, `'''`} {
				if strings.Count(line, q)%2 == 1 {
					inMultiline = q
				}
			}
		}
	}
	return idx
}

func (idx lineIndex) put(key string, line int) {
	if _, ok := idx[key]; !ok {
		idx[key] = line
	}
}

// withIndices turns a header such as "neighbours.extra" into
// "neighbours[2].extra", using how many [[neighbours]] headers came before.
// For an array header the last component gets a fresh index.
func withIndices(name string, counts map[string]int, array bool) string {
	parts := strings.Split(name, ".")
	out := ""
	for i, p := range parts {
		plain := out + p
		if out != "" {
			plain = out + "." + p
		}
		last := i == len(parts)-1
		if array && last {
			k := counts[plain]
			counts[plain] = k + 1
			out = plain + "[" + strconv.Itoa(k) + "]"
			continue
		}
		if c, ok := counts[plain]; ok {
			out = plain + "[" + strconv.Itoa(c-1) + "]"
		} else {
			out = plain
		}
	}
	return out
}

func cleanKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// line finds the line for path, falling back to its closest written
// ancestor, then to 0 (unknown).
func (idx lineIndex) line(path string) int {
	for p := path; p != ""; {
		if n, ok := idx[p]; ok {
			return n
		}
		cut := strings.LastIndexAny(p, ".[")
		if cut < 0 {
			break
		}
		p = p[:cut]
	}
	return 0
}

var indexRe = regexp.MustCompile(`\[\d+\]`)

// linesForUndecoded returns every line whose key, with array indices
// removed, equals key (toml.Key carries no array index).
func (idx lineIndex) linesFor(key string) []struct {
	Path string
	Line int
} {
	var out []struct {
		Path string
		Line int
	}
	for p, n := range idx {
		if indexRe.ReplaceAllString(p, "") == key {
			out = append(out, struct {
				Path string
				Line int
			}{p, n})
		}
	}
	return out
}
