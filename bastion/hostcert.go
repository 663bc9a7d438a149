package bastion

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
)

// hostCerts mints and caches host certificates for the bastion's host key:
// one for the bastion's own names, and one per target name answered on
// ProxyJump connections. A certificate is renewed once half its lifetime
// has passed.
type hostCerts struct {
	srv   *Server
	mu    sync.Mutex
	certs map[string]*hostCert
}

type hostCert struct {
	mu     sync.Mutex // held while minting, so one name is minted once
	signer ssh.Signer
	renew  time.Time
}

// maxCachedHostCerts bounds the cache; names come from the policy, so the
// bound is only reached with a very large policy.
const maxCachedHostCerts = 4096

// signer returns a signer presenting the host key with a certificate for
// names.
func (h *hostCerts) signer(ctx context.Context, names []string) (ssh.Signer, error) {
	key := strings.Join(names, ",")
	h.mu.Lock()
	e := h.certs[key]
	if e == nil {
		if len(h.certs) >= maxCachedHostCerts {
			for k := range h.certs {
				delete(h.certs, k)
				break
			}
		}
		e = &hostCert{}
		h.certs[key] = e
	}
	h.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	now := h.srv.now()
	if e.signer != nil && now.Before(e.renew) {
		return e.signer, nil
	}
	ttl := durationOr(h.srv.HostCertTTL, DefaultHostCertTTL)
	cert, err := h.srv.Authority.IssueHost(ctx, ca.HostRequest{
		PublicKey: h.srv.HostKey.PublicKey(),
		Hostnames: names,
		TTL:       ttl,
		MaxTTL:    ttl,
	})
	if err != nil {
		if e.signer != nil && now.Before(time.Unix(int64(e.certBefore()), 0)) {
			// Keep serving the current certificate while it is valid.
			h.srv.logger().Error("bastion: renew host certificate", "names", key, "err", err)
			return e.signer, nil
		}
		return nil, fmt.Errorf("host certificate for %s: %w", key, err)
	}
	hk, err := hostKeySigner(h.srv.HostKey)
	if err != nil {
		return nil, fmt.Errorf("host certificate for %s: %w", key, err)
	}
	s, err := ssh.NewCertSigner(cert, hk)
	if err != nil {
		return nil, fmt.Errorf("host certificate for %s: %w", key, err)
	}
	e.signer = s
	e.renew = now.Add(ttl / 2)
	return s, nil
}

// hostKeySigner restricts an RSA host key to rsa-sha2-512 and
// rsa-sha2-256 signatures: x/crypto would also offer ssh-rsa (SHA-1)
// host key algorithms, which OpenSSH disabled in 8.8. Other keys are
// returned as they are.
func hostKeySigner(k ssh.Signer) (ssh.Signer, error) {
	if k.PublicKey().Type() != ssh.KeyAlgoRSA {
		return k, nil
	}
	as, ok := k.(ssh.AlgorithmSigner)
	if !ok {
		return nil, errors.New("the RSA host key cannot make rsa-sha2-256 or rsa-sha2-512 signatures")
	}
	algs := []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	if m, ok := k.(ssh.MultiAlgorithmSigner); ok {
		algs = slices.DeleteFunc(algs, func(a string) bool { return !slices.Contains(m.Algorithms(), a) })
	}
	if len(algs) == 0 {
		return nil, errors.New("the RSA host key is restricted to SHA-1 (ssh-rsa) signatures")
	}
	return ssh.NewSignerWithAlgorithms(as, algs)
}

func (e *hostCert) certBefore() uint64 {
	if c, ok := e.signer.PublicKey().(*ssh.Certificate); ok {
		return c.ValidBefore
	}
	return 0
}
