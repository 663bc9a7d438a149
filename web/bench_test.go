package web

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
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
	srv, err := New(Options{BaseURL: "http://127.0.0.1", Issuer: authority, Audit: st, Policy: pf, GitHub: noGitHub{}})
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
	bodies := make([][]byte, clients)
	for i := range bodies {
		_, pub := newKey(b)
		bodies[i], _ = json.Marshal(CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub))})
	}
	tr := &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := ts.URL + "/api/v1/certificate"

	raw1, rawCPU1 := rawSignRate(b, 300*time.Millisecond)
	var next atomic.Int64
	var failed atomic.Int64
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime(b)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(bodies[c]))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := hc.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
	b.StopTimer()
	raw2, rawCPU2 := rawSignRate(b, 300*time.Millisecond)
	raw, rawCPU := (raw1+raw2)/2, (rawCPU1+rawCPU2)/2
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed", n, b.N)
	}
	certs, err := st.Certificates(ctx, store.CertificateFilter{Identity: "github:1001"})
	if err != nil {
		b.Fatal(err)
	}
	if len(certs) < b.N {
		b.Fatalf("%d certificates recorded; want %d", len(certs), b.N)
	}
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

// noGitHub is a GitHubSignIn for benchmarks that never sign anyone in.
type noGitHub struct{}

func (noGitHub) AuthCodeURL(identity.AuthRequest, string) string { return "" }

func (noGitHub) Exchange(context.Context, string, identity.AuthRequest) (*identity.GitHubUser, error) {
	return nil, identity.ErrRefused
}
