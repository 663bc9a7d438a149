package ca

import "golang.org/x/crypto/ssh"

// RevocationList returns a KRL revoking the given serials under every one of
// the authority's CA keys, and the given plain keys outright. Serials are
// unique across the three authorities, so listing each under all of them
// revokes exactly the certificate that carries it. version should increase
// with every list written.
func (a *Authority) RevocationList(version uint64, serials []uint64, keys []ssh.PublicKey) *KRL {
	k := &KRL{
		Version:     version,
		GeneratedAt: a.now(),
		Comment:     "sallyport",
		Keys:        keys,
	}
	if len(serials) > 0 {
		for _, kind := range Kinds {
			k.Certificates = append(k.Certificates, KRLCertificates{CA: a.PublicKey(kind), Serials: serials})
		}
	}
	return k
}
