package tomlval

import "testing"

func TestDescribe(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{"1G", `string "1G"`}, {int64(3), "integer 3"}, {0.5, "float 0.5"}, {true, "boolean true"},
		{[]any{1}, "an array"}, {map[string]any{}, "a table"}, {int32(1), "int32"},
	} {
		if got := Describe(c.v); got != c.want {
			t.Errorf("Describe(%#v) = %q, want %q", c.v, got, c.want)
		}
	}
}
