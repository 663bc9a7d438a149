// Package web will own Sallyport's HTTP side: GitHub and OIDC sign-in,
// browser and CLI sessions, the certificate issuance API, admin pages,
// recording replay, /metrics and /healthz. It does not speak SSH.
package web
