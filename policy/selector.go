package policy

import (
	"fmt"
	"strings"
)

// Selector kinds, as written in a role's hosts list.
const (
	selectAll   = "*"
	labelPrefix = "label:"
)

// Selector is a parsed entry of a role's hosts list.
type Selector struct {
	// Kind is "all", "label", "glob" or "name".
	Kind string
	// Value is the label, the glob pattern or the host name; empty for
	// "all".
	Value string
}

// ParseSelector parses a hosts entry: "*" for every host, "label:NAME",
// a glob over host names using '*' (any run of characters) and '?' (one
// character), or an exact host name.
func ParseSelector(s string) (Selector, error) {
	switch {
	case s == selectAll:
		return Selector{Kind: "all"}, nil
	case strings.HasPrefix(s, labelPrefix):
		l := strings.TrimPrefix(s, labelPrefix)
		if err := ValidateHostLabel(l); err != nil {
			return Selector{}, fmt.Errorf("selector %q: %v", s, err)
		}
		return Selector{Kind: "label", Value: l}, nil
	case strings.ContainsAny(s, "*?"):
		// Validate the pattern as a host name with its wildcards replaced,
		// so that a glob can only ever match valid names.
		probe := strings.NewReplacer("*", "x", "?", "x").Replace(s)
		if err := ValidateHostName(probe); err != nil {
			return Selector{}, fmt.Errorf("selector %q is not a valid glob over host names (only '*' and '?' are special)", s)
		}
		return Selector{Kind: "glob", Value: s}, nil
	}
	if strings.Contains(s, ":") {
		return Selector{}, fmt.Errorf("selector %q: the only prefix is \"label:\"", s)
	}
	if err := ValidateHostName(s); err != nil {
		return Selector{}, fmt.Errorf("selector %q: %v", s, err)
	}
	return Selector{Kind: "name", Value: s}, nil
}

// Matches reports whether the selector selects h.
func (s Selector) Matches(h *Host) bool {
	switch s.Kind {
	case "all":
		return true
	case "label":
		for _, l := range h.Labels {
			if l == s.Value {
				return true
			}
		}
		return false
	case "glob":
		return Glob(s.Value, h.Name)
	case "name":
		return s.Value == h.Name
	}
	return false
}

func (s Selector) String() string {
	switch s.Kind {
	case "all":
		return selectAll
	case "label":
		return labelPrefix + s.Value
	}
	return s.Value
}

// Glob reports whether name matches pattern, where '*' matches any run of
// characters (including none) and '?' exactly one byte. No other character
// is special. It runs in O(len(pattern)·len(name)) time at worst.
func Glob(pattern, name string) bool {
	p, n := 0, 0
	// Position after the last '*' seen, and the name position it is
	// currently assumed to cover up to; backtracking only ever moves
	// forward from there, which keeps matching linear per star.
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star = p
			mark = n
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == name[n]):
			p++
			n++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
