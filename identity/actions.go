package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/sallyport/sallyport/policy"
)

// ActionsIssuer is GitHub Actions' OIDC token issuer.
const ActionsIssuer = "https://token.actions.githubusercontent.com"

// maxTokenBytes bounds a presented token before any parsing.
const maxTokenBytes = 16 << 10

// ActionsConfig configures verification of GitHub Actions OIDC tokens.
type ActionsConfig struct {
	// Issuer is the token issuer. Empty means ActionsIssuer. (GitHub
	// Enterprise Server: https://HOST/_services/token.)
	Issuer string
	// Audience is the audience the job requests the token for (the
	// `audience` of core.getIDToken / actions/github-script), e.g. the
	// Sallyport server URL. Required: a token minted for another service
	// must not be accepted here.
	Audience string
	// HTTPClient fetches discovery and keys. Nil means a client with a
	// 15-second timeout.
	HTTPClient *http.Client
	// Now is the clock for expiry. Nil means time.Now.
	Now func() time.Time
}

// Actions verifies GitHub Actions OIDC tokens. The issuer is discovered on
// first use. It is safe for concurrent use.
type Actions struct {
	audience string
	now      func() time.Time
	client   *http.Client
	provider lazyProvider
}

// ActionsClaims are the verified claims of a GitHub Actions OIDC token.
type ActionsClaims struct {
	Issuer  string
	Subject string // e.g. "repo:owner/name:ref:refs/heads/main"
	// Repository is "owner/name"; Ref e.g. "refs/heads/main". Both are
	// always present in a verified token.
	Repository      string
	RepositoryID    string
	RepositoryOwner string
	Ref             string
	RefType         string
	SHA             string
	// Environment is the deployment environment, if the job has one.
	Environment string
	// Workflow is the workflow's name (set in the workflow file, so anyone
	// who can push a branch chooses it); JobWorkflowRef is
	// "owner/repo/.github/workflows/file.yml@ref", which names the file.
	Workflow       string
	JobWorkflowRef string
	Actor          string
	ActorID        string
	EventName      string
	RunID          string
	// JTI is the token's unique ID; a caller that wants each token used
	// once can remember it until Expiry.
	JTI    string
	Expiry time.Time
}

// CI returns the claims policy roles match on.
func (c *ActionsClaims) CI() policy.CIClaims {
	return policy.CIClaims{Repository: c.Repository, Ref: c.Ref, Environment: c.Environment, Workflow: c.Workflow}
}

// Identity returns the policy identity of the CI workload.
func (c *ActionsClaims) Identity() policy.Identity {
	ci := c.CI()
	return policy.Identity{CI: &ci}
}

// NewActions checks cfg. It does not contact the issuer.
func NewActions(cfg ActionsConfig) (*Actions, error) {
	if cfg.Issuer == "" {
		cfg.Issuer = ActionsIssuer
	}
	if err := checkAbsURL(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("identity: actions: issuer: %w", err)
	}
	if cfg.Audience == "" {
		return nil, errors.New("identity: actions: audience is empty")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Actions{
		audience: cfg.Audience,
		now:      cfg.Now,
		client:   cfg.HTTPClient,
		provider: lazyProvider{issuer: cfg.Issuer, client: cfg.HTTPClient},
	}, nil
}

// Verify checks a GitHub Actions OIDC token: signature by the issuer's
// published keys, issuer, audience, expiry, and the presence of the
// repository and ref claims. Errors match ErrInvalidToken, or ErrUpstream
// when the issuer could not be discovered.
func (a *Actions) Verify(ctx context.Context, raw string) (*ActionsClaims, error) {
	if raw == "" {
		return nil, fmt.Errorf("identity: actions: %w: empty token", ErrInvalidToken)
	}
	if len(raw) > maxTokenBytes {
		return nil, fmt.Errorf("identity: actions: %w: token longer than %d bytes", ErrInvalidToken, maxTokenBytes)
	}
	p, err := a.provider.get(ctx)
	if err != nil {
		return nil, err
	}
	v := p.VerifierContext(oidc.ClientContext(ctx, a.client), &oidc.Config{ClientID: a.audience, Now: a.now})
	t, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("identity: actions: %w: %w", ErrInvalidToken, err)
	}
	var cl struct {
		Repository      string `json:"repository"`
		RepositoryID    string `json:"repository_id"`
		RepositoryOwner string `json:"repository_owner"`
		Ref             string `json:"ref"`
		RefType         string `json:"ref_type"`
		SHA             string `json:"sha"`
		Environment     string `json:"environment"`
		Workflow        string `json:"workflow"`
		JobWorkflowRef  string `json:"job_workflow_ref"`
		Actor           string `json:"actor"`
		ActorID         string `json:"actor_id"`
		EventName       string `json:"event_name"`
		RunID           string `json:"run_id"`
		JTI             string `json:"jti"`
	}
	if err := t.Claims(&cl); err != nil {
		return nil, fmt.Errorf("identity: actions: %w: claims: %w", ErrInvalidToken, err)
	}
	switch {
	case cl.Repository == "":
		return nil, fmt.Errorf("identity: actions: %w: no repository claim", ErrInvalidToken)
	case cl.Ref == "":
		return nil, fmt.Errorf("identity: actions: %w: no ref claim", ErrInvalidToken)
	case t.Subject == "":
		return nil, fmt.Errorf("identity: actions: %w: no subject", ErrInvalidToken)
	}
	return &ActionsClaims{
		Issuer:          t.Issuer,
		Subject:         t.Subject,
		Repository:      cl.Repository,
		RepositoryID:    cl.RepositoryID,
		RepositoryOwner: cl.RepositoryOwner,
		Ref:             cl.Ref,
		RefType:         cl.RefType,
		SHA:             cl.SHA,
		Environment:     cl.Environment,
		Workflow:        cl.Workflow,
		JobWorkflowRef:  cl.JobWorkflowRef,
		Actor:           cl.Actor,
		ActorID:         cl.ActorID,
		EventName:       cl.EventName,
		RunID:           cl.RunID,
		JTI:             cl.JTI,
		Expiry:          t.Expiry,
	}, nil
}
