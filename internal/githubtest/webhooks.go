package githubtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
)

// SignWebhook returns the X-Hub-Signature-256 header value GitHub sends
// with body for a webhook with the given secret.
func SignWebhook(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// MembershipEvent returns the payload of a "membership" webhook: u was
// "added" to or "removed" from team slug of org.
func (s *Server) MembershipEvent(action, org, slug string, u User) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgLocked(org)
	t := s.teamLocked(org, slug)
	return mustJSON(map[string]any{
		"action":       action,
		"scope":        "team",
		"member":       s.userJSON(&u),
		"sender":       s.userJSON(&u),
		"team":         s.teamJSON(o, t),
		"organization": s.orgJSON(o),
	})
}

// OrganizationEvent returns the payload of an "organization" webhook
// about u: action is "member_added", "member_removed" or "member_invited".
func (s *Server) OrganizationEvent(action, org string, u User) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgLocked(org)
	state := StateActive
	if action == "member_invited" {
		state = StatePending
	}
	return mustJSON(map[string]any{
		"action": action,
		"membership": map[string]any{
			"url":              s.URL + "orgs/" + o.login + "/memberships/" + u.Login,
			"state":            state,
			"role":             "member",
			"organization_url": s.URL + "orgs/" + o.login,
			"user":             s.userJSON(&u),
		},
		"organization": s.orgJSON(o),
		"sender":       s.userJSON(&u),
	})
}

// TeamEvent returns the payload of a "team" webhook about team slug of
// org: action is e.g. "created", "deleted", "edited".
func (s *Server) TeamEvent(action, org, slug string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgLocked(org)
	var tj map[string]any
	if t := o.teams[strings.ToLower(slug)]; t != nil {
		tj = s.teamJSON(o, t)
	} else {
		tj = map[string]any{"slug": slug, "name": slug, "deleted": true}
	}
	return mustJSON(map[string]any{"action": action, "team": tj, "organization": s.orgJSON(o)})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
