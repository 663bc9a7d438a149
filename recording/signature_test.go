package recording

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// rechain rewrites a recording as someone holding a signing key would: the
// header edited, every digest recomputed and every signed chain record
// signed again with sign.
func rechain(t *testing.T, data []byte, editHeader func(string) string, sign func(msg []byte) *ssh.Signature) []byte {
	t.Helper()
	lines := strings.SplitAfter(string(data), "\n")
	lines = lines[:len(lines)-1]
	lines[0] = editHeader(lines[0])
	var h struct{ Sallyport HeaderInfo }
	if err := json.Unmarshal([]byte(lines[0]), &h); err != nil {
		t.Fatal(err)
	}
	prev := chainSeed
	var block, out []byte
	for _, l := range lines {
		i := strings.Index(l, `"sallyport", "chain `)
		if i < 0 {
			i = strings.Index(l, `"sallyport", "final `)
		}
		if i < 0 {
			block = append(block, l...)
			out = append(out, l...)
			continue
		}
		f := strings.Fields(l[i+len(`"sallyport", "`):])
		verb, n := f[0], f[1]
		prefix := l[:i+len(`"sallyport", "`)+len(verb)+1+len(n)+1]
		d := chainNext(prev, append(block, prefix...))
		hexd := hexString(d[:])
		nl := prefix + hexd
		if strings.Contains(l, " sig ") {
			kind := sigCheckpoint
			if verb == "final" {
				kind = sigFinal
			}
			num, _ := strconv.Atoi(n)
			nl += " sig " + base64.StdEncoding.EncodeToString(ssh.Marshal(sign(signedMessage(kind, h.Sallyport.ID, num, hexd))))
		}
		out = append(out, nl+"\"]\n"...)
		prev, block = d, nil
	}
	return out
}

// signWith signs with algo.
func signWith(t *testing.T, s ssh.Signer, algo string) func([]byte) *ssh.Signature {
	return func(msg []byte) *ssh.Signature {
		sig, err := s.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, msg, algo)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

// recordWith records a short pty session signed by signer.
func recordWith(t *testing.T, signer ssh.Signer) []byte {
	t.Helper()
	env := newEnv(t, func(o *Options) { o.Signer = signer; o.FlushInterval = time.Second })
	s, err := env.rec.Start(context.Background(), ptyMeta())
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s.Stdout(), "$ id\r\n")
	if _, err := s.Close(context.Background(), End{ExitStatus: 0}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestSigner(t *testing.T, key any) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSignatureFormat: a chain signature is accepted only as the one
// format expected for the key (ssh-ed25519, the key's ECDSA algorithm,
// rsa-sha2-512 for RSA: never SHA-1 ssh-rsa, which the key would accept if
// the signature named it), with nothing after it, in a recording of the
// format version this package knows.
func TestSignatureFormat(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed := testSigner(t)
	rsaSigner := newTestSigner(t, rsaKey) // its Sign would use SHA-1 ssh-rsa
	same := func(s string) string { return s }
	edRec := recordWith(t, ed)
	rsaRec := recordWith(t, rsaSigner)
	tests := []struct {
		name   string
		data   []byte
		key    ssh.PublicKey
		format string // of every signature in data, if not ""
		reason string // "" means intact
	}{
		{"ok/ed25519", edRec, ed.PublicKey(), ssh.KeyAlgoED25519, ""},
		{"ok/ecdsa-p256", recordWith(t, newTestSigner(t, p256)), newTestSigner(t, p256).PublicKey(), ssh.KeyAlgoECDSA256, ""},
		{"ok/ecdsa-p384", recordWith(t, newTestSigner(t, p384)), newTestSigner(t, p384).PublicKey(), ssh.KeyAlgoECDSA384, ""},
		{"ok/rsa-signed-sha512", rsaRec, rsaSigner.PublicKey(), ssh.KeyAlgoRSASHA512, ""},
		{"fail/rsa-sha1", rechain(t, rsaRec, same, signWith(t, rsaSigner, ssh.KeyAlgoRSA)), rsaSigner.PublicKey(), "", `format "ssh-rsa", want "rsa-sha2-512"`},
		{"fail/rsa-sha256", rechain(t, rsaRec, same, signWith(t, rsaSigner, ssh.KeyAlgoRSASHA256)), rsaSigner.PublicKey(), "", `format "rsa-sha2-256"`},
		{"ok/resigned-unchanged", rechain(t, edRec, same, signWith(t, ed, ssh.KeyAlgoED25519)), ed.PublicKey(), "", ""},
		{"fail/format-version-2", rechain(t, edRec, func(h string) string { return strings.Replace(h, `"format":1,`, `"format":2,`, 1) },
			signWith(t, ed, ssh.KeyAlgoED25519)), ed.PublicKey(), "", "recording format 2"},
		{"fail/format-version-missing", rechain(t, edRec, func(h string) string { return strings.Replace(h, `"format":1,`, ``, 1) },
			signWith(t, ed, ssh.KeyAlgoED25519)), ed.PublicKey(), "", "recording format 0"},
		{"fail/signature-rest", signatureRest(t, edRec), ed.PublicKey(), "", "data after the signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Verify(bytes.NewReader(tc.data), VerifyOptions{Key: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.reason == "" && !rep.Intact():
				t.Fatalf("got %v; want intact", rep.Problem)
			case tc.reason != "" && rep.Intact():
				t.Fatalf("got intact; want a problem with %q", tc.reason)
			case tc.reason != "" && !strings.Contains(rep.Problem.Error(), tc.reason):
				t.Fatalf("got %v; want %q", rep.Problem, tc.reason)
			}
			if tc.format == "" {
				return
			}
			for _, l := range strings.Split(string(tc.data), "\n") {
				_, b64, ok := strings.Cut(l, " sig ")
				if !ok {
					continue
				}
				raw, _ := base64.StdEncoding.DecodeString(strings.TrimSuffix(b64, `"]`))
				var sig ssh.Signature
				if err := ssh.Unmarshal(raw, &sig); err != nil || sig.Format != tc.format {
					t.Errorf("signature format %q (%v); want %q", sig.Format, err, tc.format)
				}
			}
		})
	}
}

// signatureRest appends bytes after the final signature's fields, which
// ssh.Unmarshal keeps in Signature.Rest: the signature still verifies.
func signatureRest(t *testing.T, data []byte) []byte {
	t.Helper()
	s := string(data)
	i := strings.LastIndex(s, " sig ") + len(" sig ")
	j := strings.LastIndex(s, `"]`)
	raw, err := base64.StdEncoding.DecodeString(s[i:j])
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s[:i] + base64.StdEncoding.EncodeToString(append(raw, 0, 0, 0, 0)) + s[j:])
}

// onlySigner hides a signer's SignWithAlgorithm.
type onlySigner struct{ ssh.Signer }

func TestNewRefusesSigner(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	env := newEnv(t, nil)
	// An RSA signer that cannot be told to use rsa-sha2-512 would sign
	// with SHA-1, which Verify refuses.
	if _, err := New(Options{Dir: env.dir, Index: env.st, Signer: onlySigner{newTestSigner(t, rsaKey)}}); err == nil {
		t.Error("New took an RSA signer that cannot choose its algorithm")
	}
	if _, err := New(Options{Dir: env.dir, Index: env.st, Signer: onlySigner{testSigner(t)}}); err != nil {
		t.Errorf("New refused an ed25519 signer: %v", err)
	}
}
