package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/store"
)

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawSignRate measures bare ssh.Certificate.SignCert with an Ed25519 CA on
// one goroutine for d, per second of wall time and per second of CPU time:
// the per-core ceiling issuance is compared with.
func rawSignRate(b *testing.B, d time.Duration) (perSecond, perCPUSecond float64) {
	_, caKey, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(caKey)
	if err != nil {
		b.Fatal(err)
	}
	_, pub := newKey(b)
	now := time.Now()
	n := 0
	start, cpu0 := time.Now(), cpuTime(b)
	for time.Since(start) < d {
		n++
		cert := &ssh.Certificate{
			Key: pub, Serial: uint64(n), CertType: ssh.UserCert, KeyId: "alice github:1001",
			ValidPrincipals: []string{"deploy", "root"},
			ValidAfter:      uint64(now.Add(-5 * time.Minute).Unix()), ValidBefore: uint64(now.Add(4 * time.Hour).Unix()),
			Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
		}
		if err := cert.SignCert(rand.Reader, signer); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds(), float64(n) / (cpuTime(b) - cpu0).Seconds()
}

// BenchmarkIssueHTTP issues certificates through POST /api/v1/certificate
// on a loopback listener, with a load generator of concurrent keep-alive
// clients in the same process. Every certificate is durably recorded
// (SQLite, synchronous=FULL, group commit) with its audit event before its
// answer. It reports certificates per second end to end, the raw SignCert
// rate per core measured in the same run, and their ratio.
func BenchmarkIssueHTTP(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	if _, err := ca.GenerateKeys(dir, ca.KeyEd25519, nil); err != nil {
		b.Fatal(err)
	}
	keys, err := ca.LoadKeys(dir)
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(dir, "sallyport.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	batch := st.NewBatcher(store.BatchOptions{})
	defer batch.Close()
	authority, err := ca.New(keys, batch)
	if err != nil {
		b.Fatal(err)
	}
	pf, err := LoadPolicyFile(ctx, "testdata/policy.yaml", st, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(Options{BaseURL: "http://127.0.0.1", Issuer: authority, Audit: st, Standing: st, Policy: pf, GitHub: noGitHub{}})
	if err != nil {
		b.Fatal(err)
	}
	token, _, err := srv.sessions.create("cli", signedIn{identity: policy.Identity{Login: "alice", ID: 1001, Teams: []string{"infra", "website"}}}, time.Hour, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	const clients = 128
	addr := ts.Listener.Addr().String()
	pubs := make([]ssh.PublicKey, clients)
	requests := make([][]byte, clients)
	for i := range requests {
		_, pubs[i] = newKey(b)
		body, _ := json.Marshal(CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pubs[i]))})
		// Each client sends the same bytes every time, serialised once: the
		// load generator shares the CPU with the server, so it does no
		// more than write a request and read its whole answer.
		requests[i] = fmt.Appendf(nil, "POST /api/v1/certificate HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", addr, token, len(body), body)
	}

	raw1, rawCPU1 := rawSignRate(b, 300*time.Millisecond)
	var next atomic.Int64
	answers := make([][][]byte, clients) // the bodies of each client's answers
	errs := make([]error, clients)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime(b)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[c], errs[c] = issueLoad(addr, requests[c], &next, int64(b.N))
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
	b.StopTimer()
	raw2, rawCPU2 := rawSignRate(b, 300*time.Millisecond)
	raw, rawCPU := (raw1+raw2)/2, (rawCPU1+rawCPU2)/2
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	checkIssued(b, st, authority.PublicKey(ca.KindUser), pubs, answers)
	// On a shared machine wall-clock rates depend on the neighbours; the
	// rates per CPU-second (server, store and load generator together)
	// compare the work itself.
	rate, rateCPU := float64(b.N)/elapsed.Seconds(), float64(b.N)/cpu.Seconds()
	b.ReportMetric(rate, "certs/s")
	b.ReportMetric(raw, "raw-signs/s/core")
	b.ReportMetric(rate/raw, "ratio-wall")
	b.ReportMetric(rateCPU, "certs/cpu-s")
	b.ReportMetric(rawCPU, "raw-signs/cpu-s")
	b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "cores")
}

// issueLoad sends request on one keep-alive connection to addr until next
// passes n, and returns the body of every answer. Any answer but 200 OK is
// an error.
func issueLoad(addr string, request []byte, next *atomic.Int64, n int64) ([][]byte, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer func() { conn.Close() }()
	br := bufio.NewReader(conn)
	var bodies [][]byte
	for next.Add(1) <= n {
		if _, err := conn.Write(request); err != nil {
			return bodies, err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return bodies, err
		}
		var body []byte
		if resp.ContentLength >= 0 {
			body = make([]byte, resp.ContentLength)
			_, err = io.ReadFull(resp.Body, body)
		} else {
			body, err = io.ReadAll(resp.Body)
		}
		resp.Body.Close()
		if err != nil {
			return bodies, err
		}
		if resp.StatusCode != http.StatusOK {
			return bodies, fmt.Errorf("answer %s: %s", resp.Status, body)
		}
		bodies = append(bodies, body)
		if resp.Close {
			conn.Close()
			if conn, err = net.Dial("tcp", addr); err != nil {
				return bodies, err
			}
			br.Reset(conn)
		}
	}
	return bodies, nil
}

// checkIssued checks, after the timed run, that every answer carries a
// valid certificate of the client's key signed by the user CA, that no
// serial was issued twice, and that each certificate is recorded as issued.
func checkIssued(b *testing.B, st *store.SQLite, userCA ssh.PublicKey, pubs []ssh.PublicKey, answers [][][]byte) {
	b.Helper()
	checker := &ssh.CertChecker{
		IsUserAuthority:          func(k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), userCA.Marshal()) },
		SupportedCriticalOptions: []string{"force-command", "source-address"},
	}
	issued := map[uint64]string{}
	for c, bodies := range answers {
		for _, body := range bodies {
			var resp CertificateResponse
			if err := json.Unmarshal(body, &resp); err != nil {
				b.Fatalf("answer %q: %v", body, err)
			}
			k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.Certificate))
			if err != nil {
				b.Fatalf("certificate %d: %v", resp.Serial, err)
			}
			cert, ok := k.(*ssh.Certificate)
			switch {
			case !ok:
				b.Fatalf("serial %d: got a %s; want a certificate", resp.Serial, k.Type())
			case cert.Serial != resp.Serial:
				b.Fatalf("certificate serial %d; answer says %d", cert.Serial, resp.Serial)
			case !bytes.Equal(cert.Key.Marshal(), pubs[c].Marshal()):
				b.Fatalf("certificate %d certifies another key", cert.Serial)
			case issued[cert.Serial] != "":
				b.Fatalf("serial %d issued twice", cert.Serial)
			}
			if err := checker.CheckCert("deploy", cert); err != nil {
				b.Fatalf("certificate %d: %v", cert.Serial, err)
			}
			issued[cert.Serial] = resp.Certificate
		}
	}
	if len(issued) != b.N {
		b.Fatalf("%d certificates issued; want %d", len(issued), b.N)
	}
	certs, err := st.Certificates(context.Background(), store.CertificateFilter{Identity: "github:1001"})
	if err != nil {
		b.Fatal(err)
	}
	recorded := map[uint64]bool{}
	for _, c := range certs {
		if want, ok := issued[c.Serial]; ok && c.AuthorizedKey != want {
			b.Fatalf("serial %d: recorded certificate differs from the one issued", c.Serial)
		}
		recorded[c.Serial] = true
	}
	for serial := range issued {
		if !recorded[serial] {
			b.Fatalf("serial %d issued but not recorded", serial)
		}
	}
}

// TestWriteCertificate checks that the answer the benchmark measures is
// byte for byte what writeJSON gives for the same response.
func TestWriteCertificate(t *testing.T) {
	access := Access{
		Hosts: []HostAccess{
			{Host: "web1", Principals: []string{"deploy", "root"}, Permissions: []string{"pty"}},
			{Host: "db<1>&", Principals: []string{"ro"}, Permissions: []string{}, ForceCommand: "echo \"hi\" && <exit>"},
		},
		Principals: []string{"deploy", "ro", "root"},
		Roles:      []string{"infra", "é\u2028"},
	}
	accessJSON, err := json.Marshal(access)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Date(2026, 11, 25, 21, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		resp CertificateResponse
	}{
		{"ok/grant", CertificateResponse{Certificate: "ssh-ed25519-cert-v01@openssh.com AAAA+/=", Serial: 1 << 40, KeyID: "alice github:1 serial=1099511627776",
			ValidAfter: after, ValidBefore: after.Add(4 * time.Hour), Access: access, accessJSON: accessJSON}},
		{"ok/escapes", CertificateResponse{Certificate: "<&>", KeyID: "\"\x01", Access: access, accessJSON: accessJSON}},
		{"ok/no-cached-json", CertificateResponse{Certificate: "c", Access: access}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, got := httptest.NewRecorder(), httptest.NewRecorder()
			writeJSON(want, http.StatusOK, &tc.resp)
			writeCertificate(got, &tc.resp)
			if got.Code != want.Code || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") {
				t.Errorf("got %d %q; want %d %q", got.Code, got.Header().Get("Content-Type"), want.Code, want.Header().Get("Content-Type"))
			}
			if got.Body.String() != want.Body.String() {
				t.Errorf("got body\n%s\nwant\n%s", got.Body, want.Body)
			}
		})
	}
}

// noGitHub is a GitHubSignIn for benchmarks that never sign anyone in.
type noGitHub struct{}

func (noGitHub) AuthCodeURL(identity.AuthRequest, string) string { return "" }

func (noGitHub) Exchange(context.Context, string, identity.AuthRequest) (*identity.GitHubUser, error) {
	return nil, identity.ErrRefused
}
