// Package tomlval names decoded TOML values in error messages, so every
// parser that takes loosely typed TOML (primitives, sweep values) says
// what it found the same way.
package tomlval

import "fmt"

// Describe is how a value BurntSushi/toml decoded into an interface
// reads in an error message: its TOML type and, for scalars, the value.
func Describe(v any) string {
	switch t := v.(type) {
	case string:
		return fmt.Sprintf("string %q", t)
	case int64:
		return fmt.Sprintf("integer %d", t)
	case float64:
		return fmt.Sprintf("float %g", t)
	case bool:
		return fmt.Sprintf("boolean %t", t)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return fmt.Sprintf("%T", v)
	}
}
