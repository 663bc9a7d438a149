package identity

import (
	"strings"
	"testing"
)

// FuzzParseWebhook feeds arbitrary payloads to the webhook parser: it must
// never panic, and whatever it accepts must be self-consistent.
func FuzzParseWebhook(f *testing.F) {
	seeds := []struct{ event, body string }{
		{"membership", `{"action":"removed","scope":"team","member":{"login":"bob","id":1002},"team":{"slug":"website"},"organization":{"login":"example-oss"}}`},
		{"organization", `{"action":"member_removed","membership":{"state":"active","user":{"login":"alice","id":1001}},"organization":{"login":"example-oss"}}`},
		{"team", `{"action":"deleted","team":{"slug":"infra","deleted":true},"organization":{"login":"example-oss"}}`},
		{"ping", `{"zen":"Keep it logically awesome.","hook_id":1}`},
		{"push", `{"ref":"refs/heads/main"}`},
		{"membership", `{"action":"removed","member":{"id":-1},"organization":{"login":"x"}}`},
		{"membership", `{"action":"removed","member":{"id":1e30},"organization":{"login":"x"}}`},
		{"organization", `{"action":"member_removed","membership":null,"organization":{"login":"x"}}`},
		{"team", `[]`},
		{"membership", `{"organization":{"login":""}}`},
	}
	for _, s := range seeds {
		f.Add(s.event, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		ev, err := ParseWebhook(event, body)
		if err != nil {
			if ev != (WebhookEvent{}) {
				t.Errorf("error %v with non-zero event %+v", err, ev)
			}
			return
		}
		switch event {
		case "membership", "organization", "team":
			if ev.Kind != event || ev.Org == "" || ev.Action == "" || ev.UserID < 0 {
				t.Errorf("accepted inconsistent event %+v for %q", ev, event)
			}
		case "ping":
			if ev.Kind != "ping" {
				t.Errorf("ping: got %+v", ev)
			}
		default:
			if ev != (WebhookEvent{}) {
				t.Errorf("ignored event %q produced %+v", event, ev)
			}
		}
		if strings.ContainsRune(ev.Kind, 0) {
			t.Errorf("kind %q", ev.Kind)
		}
	})
}

// FuzzVerifySignature: never panics, and accepts only the exact HMAC.
func FuzzVerifySignature(f *testing.F) {
	f.Add([]byte("secret"), []byte(`{"a":1}`), "sha256=00")
	f.Add([]byte("s"), []byte(""), "")
	f.Fuzz(func(t *testing.T, secret, body []byte, header string) {
		if len(secret) == 0 {
			return
		}
		err := VerifySignature(secret, body, header)
		good := signatureFor(secret, body)
		if (err == nil) != (strings.EqualFold(header, good) && strings.HasPrefix(header, "sha256=")) {
			t.Errorf("header %q: got %v; the correct one is %q", header, err, good)
		}
	})
}
