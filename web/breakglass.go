package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/store"
	"github.com/sallyport/sallyport/trust"
)

// BreakGlassPath is where a clear-signed break-glass request is POSTed.
const BreakGlassPath = "/api/v1/breakglass"

// maxBreakGlassBytes bounds a signed request; real ones are about 2 KiB.
const maxBreakGlassBytes = 64 << 10

// BreakGlassResponse is the answer to an accepted break-glass request.
type BreakGlassResponse struct {
	// Certificate in authorized_keys format, for the KEY-cert.pub file.
	Certificate string    `json:"certificate"`
	Serial      uint64    `json:"serial"`
	KeyID       string    `json:"key_id"`
	ValidBefore time.Time `json:"valid_before"`
	RequestID   string    `json:"request_id"`
	Principal   string    `json:"principal"`
	Host        string    `json:"host"`
	SignedBy    []string  `json:"signed_by"`
}

// breakGlass turns a break-glass request clear-signed by admins (`gpg
// --clearsign`; the body is the signed text as gpg wrote it) into a
// certificate of at most an hour. It asks GitHub nothing: it is for when
// GitHub is down. The admin set is computed afresh from the trust folder;
// a request is accepted once (409 after) and only while fresh (403 with
// the reason otherwise). Every attempt is audited by trust.BreakGlass and
// logged loudly here. With ?format=cert the answer is only the
// certificate line.
func (s *Server) breakGlass(w http.ResponseWriter, r *http.Request) {
	if s.o.Admin == nil || s.o.Admin.BreakGlass == nil {
		writeError(w, http.StatusNotFound, "not_configured", "break-glass is not configured on this server")
		return
	}
	client := s.client(r).String()
	if !s.breakGlassRL.allow(s.client(r)) {
		s.log.Warn("break-glass request rate-limited", "client", client)
		writeError(w, http.StatusTooManyRequests, "rate_limited", "too many break-glass requests from your address; wait a minute")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "text/plain") && !strings.HasPrefix(ct, "application/octet-stream") &&
		!strings.HasPrefix(ct, "application/x-www-form-urlencoded") && !strings.HasPrefix(ct, "application/pgp-signature") {
		writeError(w, http.StatusUnsupportedMediaType, "invalid_request", fmt.Sprintf("content type %q: send the clear-signed request as text/plain", ct))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBreakGlassBytes+1))
	if err != nil || len(body) > maxBreakGlassBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("a signed request is at most %d bytes", maxBreakGlassBytes))
		return
	}
	bg := s.o.Admin.BreakGlass
	admins, err := s.o.Admin.Admins.Refresh("break-glass request")
	if err != nil {
		s.log.Error("BREAK-GLASS request refused: no admin set", "client", client, "err", err)
		writeError(w, http.StatusServiceUnavailable, "no_admins", "nobody is an admin on this server: "+err.Error())
		return
	}
	issuer := &trust.BreakGlass{Admins: admins, Authority: bg.Authority, Ledger: bg.Ledger, Audit: s.o.Audit,
		Options: trust.BreakGlassOptions{Signers: bg.Signers}, Actor: "web:" + client}
	cert, vr, err := issuer.Issue(r.Context(), body)
	switch {
	case errors.Is(err, store.ErrRequestUsed):
		s.log.Error("BREAK-GLASS request refused: replayed", "client", client, "request", vr.ID, "err", err)
		writeError(w, http.StatusConflict, "used", "this break-glass request was used before; write and sign a new one")
		return
	case errors.Is(err, trust.ErrRefused):
		s.log.Error("BREAK-GLASS request refused", "client", client, "request", vr.ID, "err", err)
		writeError(w, http.StatusForbidden, "refused", truncate(err.Error(), 1000))
		return
	case err != nil:
		s.log.Error("BREAK-GLASS request failed", "client", client, "request", vr.ID, "err", err)
		writeError(w, http.StatusInternalServerError, "error", "the certificate could not be issued; the request is used up if it was valid, so sign a new one")
		return
	}
	var by []string
	for _, a := range vr.Signers() {
		by = append(by, a.String())
	}
	validBefore := time.Unix(int64(cert.ValidBefore), 0).UTC()
	s.log.Error("!!! BREAK-GLASS CERTIFICATE ISSUED !!!", "client", client, "request", vr.ID, "serial", cert.Serial,
		"principal", vr.Principal, "host", vr.Host, "valid_before", validBefore, "signed_by", strings.Join(by, ","), "reason", vr.Reason)
	text := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))
	if r.URL.Query().Get("format") == "cert" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, text)
		return
	}
	writeJSON(w, http.StatusOK, BreakGlassResponse{Certificate: text, Serial: cert.Serial, KeyID: cert.KeyId, ValidBefore: validBefore,
		RequestID: vr.ID, Principal: vr.Principal, Host: vr.Host, SignedBy: by})
}
