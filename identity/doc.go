// Package identity owns who a person or workload is, as told by an
// identity provider: GitHub sign-in (the user's login, immutable numeric ID
// and teams in the policy's organisation), generic OpenID Connect sign-in
// (issuer and subject, and a groups claim that plays the role of teams),
// GitHub Actions OIDC tokens (the CI workload's repository, ref,
// environment and workflow), and the organisation Directory that keeps team
// membership current between sign-ins.
//
// It answers "who is this", never "what may they do": the results convert to
// policy.Identity, and package policy decides. Provider tokens obtained here
// are used for the calls that establish the identity and then dropped; they
// are never logged and never returned.
//
// Every check fails closed: a GitHub answer that is incomplete (a failed
// page of a paginated list, malformed JSON, a timeout) is an error, never a
// partial identity.
package identity
