package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWriterOneLinePerEvent(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 30, 0, 123456789, time.FixedZone("CEST", 2*60*60))
	tests := []struct {
		name string
		e    Event
	}{
		{"ok/plain", Event{Time: at, Type: TypeIssue, Actor: "github:12345", Subject: "alice", Outcome: OutcomeOK}},
		{"ok/forged-line-in-actor", Event{Time: at, Type: TypeLogin, Actor: "evil\n{\"type\":\"issue\",\"actor\":\"root\",\"outcome\":\"ok\"}", Outcome: OutcomeDenied}},
		{"ok/control-chars", Event{Time: at, Type: TypeDeny, Actor: "a\r\x00\x1b[2J\u2028b", Outcome: OutcomeDenied, Reason: "x\ny", Fields: map[string]string{"k\n": "v\r\n"}}},
		{"ok/html", Event{Time: at, Type: TypeExec, Actor: "<script>&", Outcome: OutcomeOK}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := NewWriter(&buf).Write(tt.e); err != nil {
				t.Fatalf("Write: %v", err)
			}
			out := buf.String()
			if n := strings.Count(out, "\n"); n != 1 || !strings.HasSuffix(out, "\n") {
				t.Fatalf("got %d newlines in %q; want exactly one, at the end", n, out)
			}
			if strings.Contains(out, "\r") || strings.Contains(out, "\u2028") {
				t.Errorf("got raw line separator in %q", out)
			}
			var got Event
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			want := tt.e
			want.Time = want.Time.UTC()
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v; want %#v", got, want)
			}
		})
	}
}

func TestWriterTimeUTC(t *testing.T) {
	at := time.Date(2025, 3, 1, 14, 30, 0, 5, time.FixedZone("CEST", 2*60*60))
	var buf bytes.Buffer
	if err := NewWriter(&buf).Write(Event{Time: at, Type: TypeIssue, Actor: "a", Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if got, want := raw["time"], "2025-03-01T12:30:00.000000005Z"; got != want {
		t.Errorf("got time %q; want %q", got, want)
	}
	for _, k := range []string{"subject", "reason", "fields"} {
		if _, ok := raw[k]; ok {
			t.Errorf("got empty %q in output %s; want it omitted", k, buf.Bytes())
		}
	}
}

func TestWriterConcurrent(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			e := Event{Time: time.Now(), Type: TypeExec, Actor: strings.Repeat("x", i*50), Outcome: OutcomeOK}
			if err := w.Write(e); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	lines := 0
	for sc.Scan() {
		lines++
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %d: %v", lines, err)
		}
	}
	if lines != n {
		t.Errorf("got %d lines; want %d", lines, n)
	}
}

func TestEventValidate(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		e    Event
		ok   bool
	}{
		{"ok/complete", Event{Time: now, Type: TypeIssue, Actor: "a", Outcome: OutcomeOK}, true},
		{"fail/no-time", Event{Type: TypeIssue, Actor: "a", Outcome: OutcomeOK}, false},
		{"fail/no-type", Event{Time: now, Actor: "a", Outcome: OutcomeOK}, false},
		{"fail/no-actor", Event{Time: now, Type: TypeIssue, Outcome: OutcomeOK}, false},
		{"fail/no-outcome", Event{Time: now, Type: TypeIssue, Actor: "a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.e.Validate()
			if (err == nil) != tt.ok {
				t.Errorf("got error %v; want ok=%v", err, tt.ok)
			}
		})
	}
}
