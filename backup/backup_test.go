package backup

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestTarget(t *testing.T) {
	dir := "/restore"
	tests := []struct {
		name, in, want string
	}{
		{"ok/data", "sallyport-backup/data/sallyport.db", "/restore/sallyport.db"},
		{"ok/trust", "sallyport-backup/trust/keys/A.asc", "/restore/trust/keys/A.asc"},
		{"ok/recording", "sallyport-backup/recordings/2026/06/x.cast", "/restore/recordings/2026/06/x.cast"},
		{"ok/policy", "sallyport-backup/policy/policy.yaml", "/restore/policy/policy.yaml"},
		{"fail/dotdot", "sallyport-backup/data/../../etc/passwd", ""},
		{"fail/dotdot-first", "sallyport-backup/../x", ""},
		{"fail/absolute", "/etc/passwd", ""},
		{"fail/other-root", "other/data/x", ""},
		{"fail/unknown-folder", "sallyport-backup/bin/sh", ""},
		{"fail/folder-only", "sallyport-backup/data", ""},
		{"fail/not-clean", "sallyport-backup/data//x", ""},
		{"fail/backslash", `sallyport-backup/data/..\x`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := target(dir, tc.in)
			if tc.want == "" {
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("target(%q) = %q, %v; want ErrCorrupt", tc.in, got, err)
				}
				return
			}
			if err != nil || got != filepath.FromSlash(tc.want) {
				t.Errorf("target(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestCheckFiles(t *testing.T) {
	m := &Manifest{Files: []File{{Path: "a", Size: 1, SHA256: "x"}, {Path: "b", Size: 2, SHA256: "y"}}}
	tests := []struct {
		name string
		got  map[string]File
		ok   bool
	}{
		{"ok/same", map[string]File{"a": {"a", 1, "x"}, "b": {"b", 2, "y"}}, true},
		{"fail/missing", map[string]File{"a": {"a", 1, "x"}}, false},
		{"fail/changed", map[string]File{"a": {"a", 1, "z"}, "b": {"b", 2, "y"}}, false},
		{"fail/extra", map[string]File{"a": {"a", 1, "x"}, "b": {"b", 2, "y"}, "c": {"c", 0, ""}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkFiles(m, tc.got)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrCorrupt)) {
				t.Errorf("checkFiles = %v; want ok=%v", err, tc.ok)
			}
		})
	}
}
