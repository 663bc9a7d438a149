package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
)

// WebhookConfig configures the GitHub webhook endpoint of a Directory.
type WebhookConfig struct {
	// Secret is the webhook secret shared with GitHub. Required.
	Secret []byte
	// MaxBodyBytes bounds a delivery. Zero means 1 MiB.
	MaxBodyBytes int64
	// ReplayWindow is how long delivery IDs are remembered; a delivery
	// seen within it is refused. Zero means 24 hours.
	ReplayWindow time.Duration
	// MaxRemembered bounds the delivery IDs kept; beyond it the oldest are
	// forgotten early. Zero means 100000.
	MaxRemembered int
}

// Webhook answers GitHub webhook deliveries for a Directory: it verifies
// X-Hub-Signature-256 (HMAC-SHA256 of the body with the secret, compared
// in constant time), refuses a delivery ID seen before within the replay
// window, and on membership, organization and team events applies
// announced removals at once and asks the Directory to refresh.
//
// Answers: 202 handled, 200 ping or an event it ignores, 400 malformed,
// 401 bad or missing signature, 405 not POST, 409 replayed delivery, 413
// too large, 415 not JSON, 422 event of another organisation.
type Webhook struct {
	dir    *Directory
	secret []byte
	max    int64
	window time.Duration
	limit  int

	mu   sync.Mutex
	seen map[string]time.Time
	fifo []seenID
}

type seenID struct {
	id string
	at time.Time
}

// NewWebhook returns the webhook endpoint for d.
func NewWebhook(d *Directory, cfg WebhookConfig) (*Webhook, error) {
	if d == nil {
		return nil, errors.New("identity: webhook: no directory")
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("identity: webhook: secret is empty")
	}
	w := &Webhook{
		dir:    d,
		secret: append([]byte(nil), cfg.Secret...),
		max:    cfg.MaxBodyBytes,
		window: cfg.ReplayWindow,
		limit:  cfg.MaxRemembered,
		seen:   map[string]time.Time{},
	}
	if w.max <= 0 {
		w.max = 1 << 20
	}
	if w.window <= 0 {
		w.window = 24 * time.Hour
	}
	if w.limit <= 0 {
		w.limit = 100000
	}
	return w, nil
}

func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(rw, "content type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, w.max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(rw, "payload too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(rw, "cannot read payload", http.StatusBadRequest)
		return
	}
	if err := VerifySignature(w.secret, body, r.Header.Get("X-Hub-Signature-256")); err != nil {
		http.Error(rw, "bad signature", http.StatusUnauthorized)
		return
	}
	delivery := r.Header.Get("X-GitHub-Delivery")
	event := r.Header.Get("X-GitHub-Event")
	if delivery == "" || len(delivery) > 100 || event == "" {
		http.Error(rw, "missing X-GitHub-Delivery or X-GitHub-Event", http.StatusBadRequest)
		return
	}
	if !w.remember(delivery) {
		http.Error(rw, "delivery already received", http.StatusConflict)
		return
	}
	ev, err := ParseWebhook(event, body)
	if err != nil {
		http.Error(rw, "malformed payload", http.StatusBadRequest)
		return
	}
	switch {
	case ev.Kind == "ping" || ev.Kind == "":
		rw.WriteHeader(http.StatusOK)
		return
	case !strings.EqualFold(ev.Org, w.dir.org):
		http.Error(rw, "event for another organisation", http.StatusUnprocessableEntity)
		return
	}
	cause := "webhook " + ev.Kind + " " + ev.Action
	switch {
	case ev.Kind == "membership" && ev.Action == "removed" && ev.UserID > 0 && ev.Team != "":
		w.dir.removeTeam(cause, ev.UserID, ev.Team)
	case ev.Kind == "organization" && ev.Action == "member_removed" && ev.UserID > 0:
		w.dir.removeMember(cause, ev.UserID)
	case ev.Kind == "team" && ev.Action == "deleted" && ev.Team != "":
		w.dir.dropTeam(cause, ev.Team)
	}
	w.dir.TriggerRefresh()
	rw.WriteHeader(http.StatusAccepted)
}

// remember records a delivery ID and reports whether it was new.
func (w *Webhook) remember(id string) bool {
	now := w.dir.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.fifo) > 0 && (now.Sub(w.fifo[0].at) > w.window || len(w.fifo) >= w.limit) {
		if w.seen[w.fifo[0].id].Equal(w.fifo[0].at) {
			delete(w.seen, w.fifo[0].id)
		}
		w.fifo = w.fifo[1:]
	}
	if at, ok := w.seen[id]; ok && now.Sub(at) <= w.window {
		return false
	}
	w.seen[id] = now
	w.fifo = append(w.fifo, seenID{id, now})
	return true
}

// VerifySignature checks a GitHub X-Hub-Signature-256 header value
// ("sha256=" and the hex HMAC-SHA256 of body keyed with secret) in
// constant time.
func VerifySignature(secret, body []byte, header string) error {
	hexsig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return errors.New("identity: webhook: missing or unsupported signature")
	}
	got, err := hex.DecodeString(hexsig)
	if err != nil || len(got) != sha256.Size {
		return errors.New("identity: webhook: malformed signature")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return errors.New("identity: webhook: signature does not match")
	}
	return nil
}

// WebhookEvent is what the Directory uses of a GitHub webhook payload.
type WebhookEvent struct {
	// Kind is the X-GitHub-Event value for the events the Directory acts
	// on ("membership", "organization", "team", "ping"); empty for others.
	Kind string
	// Action is the payload's action, e.g. "removed", "member_removed".
	Action string
	// Org is the organisation's login.
	Org string
	// UserID and Login name the member concerned, if any.
	UserID int64
	Login  string
	// Team is the team slug concerned, if any.
	Team string
}

// ParseWebhook parses the payload of a GitHub webhook of type event.
// Events other than membership, organization, team and ping yield a zero
// WebhookEvent and no error. The payload must be verified first.
func ParseWebhook(event string, body []byte) (WebhookEvent, error) {
	switch event {
	case "membership", "organization", "team", "ping":
	default:
		return WebhookEvent{}, nil
	}
	var p struct {
		Action       string `json:"action"`
		Organization *struct {
			Login string `json:"login"`
		} `json:"organization"`
		Member     *hookUser `json:"member"`
		Membership *struct {
			User *hookUser `json:"user"`
		} `json:"membership"`
		Team *struct {
			Slug string `json:"slug"`
		} `json:"team"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return WebhookEvent{}, fmt.Errorf("identity: webhook %s: %w", event, err)
	}
	ev := WebhookEvent{Kind: event, Action: p.Action}
	if event == "ping" {
		return ev, nil
	}
	if p.Organization == nil || p.Organization.Login == "" {
		return WebhookEvent{}, fmt.Errorf("identity: webhook %s: no organization", event)
	}
	ev.Org = p.Organization.Login
	if p.Action == "" {
		return WebhookEvent{}, fmt.Errorf("identity: webhook %s: no action", event)
	}
	var u *hookUser
	switch event {
	case "membership":
		u = p.Member
	case "organization":
		if p.Membership != nil {
			u = p.Membership.User
		}
	}
	if u != nil {
		if u.ID < 0 {
			return WebhookEvent{}, fmt.Errorf("identity: webhook %s: negative user ID", event)
		}
		ev.UserID, ev.Login = u.ID, u.Login
	}
	if p.Team != nil {
		ev.Team = p.Team.Slug
	}
	return ev, nil
}

type hookUser struct {
	Login string `json:"login"`
	ID    int64  `json:"id"`
}
