// Package bench measures Sallyport's bastion against OpenSSH used as a
// ProxyJump bastion, on this machine, in one run. Run it with run.sh (or
// go test ./bench -run '^$' -bench Bastion -benchtime 1x -v); it needs
// OpenSSH's ssh and sshd.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/internal/sshdtest"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/store"
)

var (
	sizeMiB   = flag.Int("bastion.mib", 1024, "MiB moved each way per throughput run")
	reps      = flag.Int("bastion.reps", 3, "throughput runs per path and direction (the median is reported)")
	setups    = flag.Int("bastion.setups", 50, "connection setups per path")
	keys      = flag.Int("bastion.keys", 300, "keystrokes per path for echo latency")
	sessions  = flag.Int("bastion.sessions", 500, "concurrent interactive sessions held through the bastion")
	whichPart = flag.String("bastion.only", "", "run only these parts, comma-separated: throughput,setup,latency,concurrency")
	hold      = flag.Bool("bastion.hold", false, "set up, print each path's ssh command and wait an hour instead of measuring, to try the paths by hand")
	traceDir  = flag.String("bastion.trace", "", "write a Go execution trace of each Sallyport bastion process into this `directory` (rec.trace, norec.trace)")
	loginFlag = flag.String("bastion.login", "", "target `account` to log in as (default: the user running the benchmark); its shell's start-up is part of every path's setup time")
)

type rig struct {
	b        *testing.B
	dir      string
	target   *sshdtest.Server
	jumpSSHD *sshdtest.Server
	ours     map[string]string // "rec", "norec" -> bastion address
	procs    []*exec.Cmd
	baseCfg  string // ssh_config for OpenSSH paths (session-CA cert)
	oursCfg  string // ssh_config for Sallyport paths (user-CA cert)
	userKey  ed25519.PrivateKey
	userCert *ssh.Certificate
	hostCA   ssh.PublicKey
	login    string
}

func newSigner(b *testing.B) (ed25519.PrivateKey, ssh.Signer) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		b.Fatal(err)
	}
	return k, s
}

func setup(b *testing.B) *rig {
	ctx := context.Background()
	r := &rig{b: b, dir: b.TempDir(), ours: map[string]string{}}
	if _, err := ca.GenerateKeys(r.dir, ca.KeyEd25519, nil); err != nil {
		b.Fatal(err)
	}
	ks, err := ca.LoadKeys(r.dir)
	if err != nil {
		b.Fatal(err)
	}
	r.hostCA = ks.Host.PublicKey()
	st, err := store.Open(ctx, filepath.Join(r.dir, "sallyport.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	auth, err := ca.New(ks, st)
	if err != nil {
		b.Fatal(err)
	}
	hostCert := func(k ssh.PublicKey, names ...string) *ssh.Certificate {
		c, err := auth.IssueHost(ctx, ca.HostRequest{PublicKey: k, Hostnames: names, TTL: 24 * time.Hour, MaxTTL: 24 * time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	extra := []string{"MaxStartups 2000:30:4000", "MaxSessions 100"}
	tk, ts := newSigner(b)
	r.target = sshdtest.Start(b, sshdtest.Config{TrustedUserCAKeys: []ssh.PublicKey{ks.Session.PublicKey()}, HostKey: tk,
		HostCertificate: hostCert(ts.PublicKey(), "web1", "127.0.0.1"), Extra: extra})
	jk, js := newSigner(b)
	r.jumpSSHD = sshdtest.Start(b, sshdtest.Config{TrustedUserCAKeys: []ssh.PublicKey{ks.Session.PublicKey()}, HostKey: jk,
		HostCertificate: hostCert(js.PublicKey(), "127.0.0.1"), Extra: extra})
	r.login = r.target.User
	if *loginFlag != "" {
		r.login = *loginFlag
	}

	// The OpenSSH paths use a certificate from the session CA, which the
	// target and the OpenSSH bastion trust; Sallyport's paths a user
	// certificate, which only Sallyport's bastion trusts.
	bk, bs := newSigner(b)
	bc := &ssh.Certificate{Key: bs.PublicKey(), Serial: 1 << 40, CertType: ssh.UserCert, KeyId: "bench", ValidPrincipals: []string{r.login},
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(24 * time.Hour).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": "", "permit-port-forwarding": ""}}}
	if err := bc.SignCert(rand.Reader, ks.Session); err != nil {
		b.Fatal(err)
	}
	r.baseCfg = r.clientConfig("base", bk, bc)
	uk, us := newSigner(b)
	uc, err := auth.IssueUser(ctx, ca.UserRequest{PublicKey: us.PublicKey(), Principals: []string{r.login}, TTL: 12 * time.Hour, MaxTTL: 24 * time.Hour,
		Permissions: []ca.Permission{ca.PermitPTY, ca.PermitPortForwarding}, KeyID: "bench github:1", Identity: "github:1"})
	if err != nil {
		b.Fatal(err)
	}
	r.userKey, r.userCert = uk, uc
	r.oursCfg = r.clientConfig("ours", uk, uc)

	pol := fmt.Sprintf(`version: 1
github:
  org: bench
defaults:
  ttl: 8h
  max_ttl: 24h
hosts:
  - name: web1
    address: %s
roles:
  - name: bench
    members:
      users: [bench]
    principals: [%s]
    hosts: [web1]
    permissions: [pty, port-forwarding]
`, r.target.Addr, r.login)
	polFile := filepath.Join(r.dir, "policy.yaml")
	if err := os.WriteFile(polFile, []byte(pol), 0o600); err != nil {
		b.Fatal(err)
	}
	if _, err := policy.Parse(polFile, []byte(pol)); err != nil {
		b.Fatal(err)
	}
	hk, _ := newSigner(b)
	block, err := ssh.MarshalPrivateKey(hk, "")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "bastion_host_key"), pem.EncodeToMemory(block), 0o600); err != nil {
		b.Fatal(err)
	}
	st.Close()
	for _, mode := range []string{"rec", "norec"} {
		cfg := serveConfig{Data: r.dir, Policy: polFile, Identities: map[int64]policy.Identity{1: {Login: "bench"}}, Record: mode == "rec"}
		if *traceDir != "" {
			cfg.Trace = filepath.Join(*traceDir, mode+".trace")
		}
		r.ours[mode] = r.startBastion(cfg)
	}
	return r
}

func (r *rig) clientConfig(name string, key ed25519.PrivateKey, cert *ssh.Certificate) string {
	dir := filepath.Join(r.dir, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		r.b.Fatal(err)
	}
	id := sshdtest.WriteIdentity(r.b, dir, key, cert)
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(sshdtest.CertAuthorityLine(r.hostCA)), 0o600); err != nil {
		r.b.Fatal(err)
	}
	cfg := filepath.Join(dir, "ssh_config")
	lines := []string{"Host *", "BatchMode yes", "IdentitiesOnly yes", "IdentityAgent none", "IdentityFile " + id, "CertificateFile " + id + "-cert.pub",
		"UserKnownHostsFile " + kh, "GlobalKnownHostsFile none", "StrictHostKeyChecking yes", "UpdateHostKeys no", "CheckHostIP no",
		"ControlMaster no", "ControlPath none", "LogLevel ERROR", "KexAlgorithms curve25519-sha256"}
	if err := os.WriteFile(cfg, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		r.b.Fatal(err)
	}
	return cfg
}

func (r *rig) startBastion(cfg serveConfig) string {
	b, _ := json.Marshal(cfg)
	path := filepath.Join(r.dir, fmt.Sprintf("serve-%t.json", cfg.Record))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		r.b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-bastion.serve="+path)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		r.b.Fatal(err)
	}
	r.b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	r.procs = append(r.procs, cmd)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		r.b.Fatalf("bastion process: %v", err)
	}
	return strings.TrimSpace(line)
}

// path is one way of reaching the target: ssh arguments before the command.
type path struct {
	name string
	args []string
}

func splitAddr(a string) (string, string) {
	i := strings.LastIndexByte(a, ':')
	return a[:i], a[i+1:]
}

func (r *rig) paths() map[string]path {
	_, oursPort := splitAddr(r.ours["rec"])
	_, norecPort := splitAddr(r.ours["norec"])
	return map[string]path{
		"direct":          {"direct to sshd (no bastion)", []string{"-F", r.baseCfg, "-p", strconv.Itoa(r.target.Port), "-l", r.login, "127.0.0.1"}},
		"openssh-jump":    {"OpenSSH sshd as ProxyJump", []string{"-F", r.baseCfg, "-J", r.login + "@127.0.0.1:" + strconv.Itoa(r.jumpSSHD.Port), "-p", strconv.Itoa(r.target.Port), "-l", r.login, "127.0.0.1"}},
		"ours-jump":       {"Sallyport, ssh -J (recording on)", []string{"-F", r.oursCfg, "-J", "bench@127.0.0.1:" + oursPort, "-l", r.login, "web1"}},
		"ours-user":       {"Sallyport, login@host@bastion (recording on)", []string{"-F", r.oursCfg, "-p", oursPort, "-l", r.login + "@web1", "127.0.0.1"}},
		"ours-jump-norec": {"Sallyport, ssh -J (recording off)", []string{"-F", r.oursCfg, "-J", "bench@127.0.0.1:" + norecPort, "-l", r.login, "web1"}},
		"ours-user-norec": {"Sallyport, login@host@bastion (recording off)", []string{"-F", r.oursCfg, "-p", norecPort, "-l", r.login + "@web1", "127.0.0.1"}},
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func pct(xs []float64, p float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

func sshCmd(p path, remote string) *exec.Cmd {
	return exec.Command("ssh", append(append([]string{}, p.args...), "--", remote)...)
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func (r *rig) throughput(p path, up bool) float64 {
	n := int64(*sizeMiB) << 20
	var cmd *exec.Cmd
	if up {
		cmd = sshCmd(p, "cat > /dev/null")
		cmd.Stdin = io.LimitReader(zeros{}, n)
	} else {
		cmd = sshCmd(p, fmt.Sprintf("head -c %d /dev/zero", n))
	}
	var counted countWriter
	cmd.Stdout = &counted
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		r.b.Fatalf("%s: %v %s", p.name, err, stderr.String())
	}
	d := time.Since(start)
	if !up && counted.n != n {
		r.b.Fatalf("%s: got %d bytes; want %d", p.name, counted.n, n)
	}
	return float64(n) / (1 << 20) / d.Seconds()
}

// cpuSeconds is the user and system CPU time the process pid has used.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses:
	// utime and stime are the 14th and 15th fields of the line.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// throughputs moves sizeMiB each way on every path, reps times, and prints
// each path's median against OpenSSH, then what recording costs: the ratio
// of throughput with recording on to off, and the bastion's CPU time per
// GiB each way.
//
// Runs are interleaved across paths so that a change in the machine's load
// affects every path alike. A form's recording-on and recording-off runs
// follow each other, in alternating order, and the cost is the median of
// the ratios of those pairs, so that slow drifts in load cancel out.
func (r *rig) throughputs(ps map[string]path) {
	fmt.Printf("\nThroughput, %d MiB each way, default ciphers (median of %d), MiB/s:\n", *sizeMiB, *reps)
	type pd struct {
		key string
		up  bool
	}
	rate, cpu := map[pd][]float64{}, map[pd][]float64{}
	run := func(key string, up bool) {
		pid := 0
		if strings.HasPrefix(key, "ours-") {
			pid = r.procs[r.mode(key)].Process.Pid
		}
		c0 := cpuSeconds(pid)
		rate[pd{key, up}] = append(rate[pd{key, up}], r.throughput(ps[key], up))
		if pid != 0 {
			cpu[pd{key, up}] = append(cpu[pd{key, up}], (cpuSeconds(pid)-c0)*1024/float64(*sizeMiB))
		}
	}
	for i := range *reps {
		for _, up := range []bool{false, true} {
			run("openssh-jump", up)
			run("direct", up)
			for _, form := range []string{"ours-jump", "ours-user"} {
				pair := []string{form, form + "-norec"}
				if i%2 == 1 {
					pair[0], pair[1] = pair[1], pair[0]
				}
				for _, key := range pair {
					run(key, up)
				}
			}
		}
	}
	dirName := func(up bool) string {
		if up {
			return "upload (client→target)"
		}
		return "download (target→client)"
	}
	for _, key := range []string{"openssh-jump", "ours-jump", "ours-user", "ours-jump-norec", "ours-user-norec", "direct"} {
		for _, up := range []bool{false, true} {
			m, base := median(rate[pd{key, up}]), median(rate[pd{"openssh-jump", up}])
			fmt.Printf("  %-48s %-26s %8.1f  %.2f× OpenSSH ProxyJump\n", ps[key].name, dirName(up), m, m/base)
		}
	}
	fmt.Printf("\nRecording cost: throughput with recording on ÷ off (median of %d paired runs), and the bastion's CPU seconds per GiB (median):\n", *reps)
	for _, form := range []string{"ours-jump", "ours-user"} {
		for _, up := range []bool{false, true} {
			on, off := rate[pd{form, up}], rate[pd{form + "-norec", up}]
			ratios := make([]float64, len(on))
			for i := range on {
				ratios[i] = on[i] / off[i]
			}
			name := strings.TrimSuffix(ps[form].name, " (recording on)")
			fmt.Printf("  %-34s %-26s %.3f  (CPU s/GiB: on %.2f, off %.2f)\n", name, dirName(up), median(ratios),
				median(cpu[pd{form, up}]), median(cpu[pd{form + "-norec", up}]))
		}
	}
}

// mode is the index in r.procs of the bastion that serves path key.
func (r *rig) mode(key string) int {
	if strings.HasSuffix(key, "-norec") {
		return 1
	}
	return 0
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// setupTimes times "ssh ... true" on each path. Runs are interleaved across
// paths so that a change in the machine's load affects every path alike.
func (r *rig) setupTimes(ps []path) [][]float64 {
	ts := make([][]float64, len(ps))
	for range *setups {
		for i, p := range ps {
			start := time.Now()
			if out, err := sshCmd(p, "true").CombinedOutput(); err != nil {
				r.b.Fatalf("%s: %v %s", p.name, err, out)
			}
			ts[i] = append(ts[i], float64(time.Since(start).Microseconds())/1000)
		}
	}
	return ts
}

// echoSession is an interactive session whose pty echoes what is typed.
type echoSession struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func (r *rig) startEcho(p path) *echoSession {
	cmd := exec.Command("ssh", append(append([]string{"-tt"}, p.args...), "--", "stty -icanon; exec cat > /dev/null")...)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		r.b.Fatal(err)
	}
	e := &echoSession{cmd: cmd, in: in, out: bufio.NewReader(out)}
	r.b.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	// Synchronise: the first echo may follow a prompt or nothing.
	e.key(r.b, p, 's')
	return e
}

// key types c and waits for its echo.
func (e *echoSession) key(b *testing.B, p path, c byte) time.Duration {
	start := time.Now()
	if _, err := e.in.Write([]byte{c}); err != nil {
		b.Fatal(err)
	}
	for {
		got, err := e.out.ReadByte()
		if err != nil {
			b.Fatalf("%s: %v", p.name, err)
		}
		if got == c {
			return time.Since(start)
		}
	}
}

// echoLatency types single bytes into a remote pty on each path and times
// each echo. Keystrokes go to the paths in turn, so that a change in the
// machine's load affects every path alike.
func (r *rig) echoLatency(ps []path) [][]float64 {
	es := make([]*echoSession, len(ps))
	for i, p := range ps {
		es[i] = r.startEcho(p)
	}
	ts := make([][]float64, len(ps))
	for range *keys {
		for i, e := range es {
			ts[i] = append(ts[i], float64(e.key(r.b, ps[i], 'k').Microseconds())/1000)
		}
	}
	return ts
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// concurrency holds n interactive sessions open through the recording
// bastion at once, checks each echoes its own bytes intact, and returns the
// bastion's memory per session.
func (r *rig) concurrency(n int) (perSession float64, intact int) {
	proc := r.procs[0]
	before := rss(proc.Process.Pid)
	s, err := ssh.NewSignerFromKey(r.userKey)
	if err != nil {
		r.b.Fatal(err)
	}
	cs, err := ssh.NewCertSigner(r.userCert, s)
	if err != nil {
		r.b.Fatal(err)
	}
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool { return bytes.Equal(k.Marshal(), r.hostCA.Marshal()) }}
	cfg := &ssh.ClientConfig{User: r.login + "@web1", Auth: []ssh.AuthMethod{ssh.PublicKeys(cs)}, HostKeyCallback: checker.CheckHostKey,
		HostKeyAlgorithms: []string{ssh.CertAlgoED25519v01}, Timeout: 30 * time.Second}
	type held struct {
		c   *ssh.Client
		s   *ssh.Session
		in  io.WriteCloser
		out *bufio.Reader
		msg string
	}
	hs := make([]*held, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var mu sync.Mutex
	var errs []error
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			fail := func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
			c, err := ssh.Dial("tcp", r.ours["rec"], cfg)
			if err != nil {
				fail(err)
				return
			}
			se, err := c.NewSession()
			if err != nil {
				fail(err)
				return
			}
			if err := se.RequestPty("xterm", 24, 80, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
				fail(err)
				return
			}
			in, _ := se.StdinPipe()
			out, _ := se.StdoutPipe()
			if err := se.Start("stty raw -echo; echo ready; exec cat"); err != nil {
				fail(err)
				return
			}
			br := bufio.NewReader(out)
			if _, err := br.ReadString('\n'); err != nil {
				fail(err)
				return
			}
			buf := make([]byte, 1200)
			rand.Read(buf)
			hs[i] = &held{c: c, s: se, in: in, out: br, msg: base64.StdEncoding.EncodeToString(buf) + "\n"}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		r.b.Fatalf("%d of %d sessions failed to open; first: %v", len(errs), n, errs[0])
	}
	time.Sleep(time.Second)
	during := rss(proc.Process.Pid)
	for _, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := io.WriteString(h.in, h.msg); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			// The target account's shell start-up may print (say, a
			// pyenv warning) around the echo; the payload must arrive
			// whole and in order.
			var got []byte
			buf := make([]byte, 4096)
			var err error
			for !strings.Contains(string(got), h.msg) && err == nil {
				var n int
				n, err = h.out.Read(buf)
				got = append(got, buf[:n]...)
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				intact++
			} else {
				errs = append(errs, fmt.Errorf("payload not echoed whole: %v after %d bytes", err, len(got)))
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		mu.Lock()
		errs = append(errs, fmt.Errorf("%d sessions still waiting for their echo after a minute", n-intact-len(errs)))
		mu.Unlock()
	}
	for i, err := range errs {
		if i < 3 {
			fmt.Printf("  session problem: %v\n", err)
		}
	}
	for _, h := range hs {
		h.c.Close()
	}
	return float64(during-before) / float64(n), intact
}

func only(part string) bool {
	if *whichPart == "" {
		return true
	}
	for _, p := range strings.Split(*whichPart, ",") {
		if p == part {
			return true
		}
	}
	return false
}

func BenchmarkBastion(b *testing.B) {
	r := setup(b)
	ps := r.paths()
	if *hold {
		for k, p := range ps {
			fmt.Printf("%s: ssh %s\n", k, strings.Join(p.args, " "))
		}
		fmt.Println("holding the rig open for an hour; interrupt to stop")
		time.Sleep(time.Hour)
		return
	}
	for b.Loop() {
		if only("throughput") {
			r.throughputs(ps)
		}
		order := []string{"openssh-jump", "direct", "ours-jump", "ours-user"}
		var sel []path
		for _, key := range order {
			sel = append(sel, ps[key])
		}
		if only("setup") {
			fmt.Printf("\nConnection setup, ssh ... true as %s, %d runs, KexAlgorithms=curve25519-sha256, ms:\n", r.login, *setups)
			ts := r.setupTimes(sel)
			base := median(ts[0])
			for i, p := range sel {
				m := median(ts[i])
				fmt.Printf("  %-48s median %7.1f  p90 %7.1f  %.2f× OpenSSH ProxyJump\n", p.name, m, pct(ts[i], 0.9), m/base)
			}
		}
		if only("latency") {
			fmt.Printf("\nKeystroke echo latency through a pty, %d single bytes, ms:\n", *keys)
			ts := r.echoLatency(sel)
			base := median(ts[0])
			for i, p := range sel {
				m := median(ts[i])
				fmt.Printf("  %-48s median %6.3f  p90 %6.3f  %.2f× OpenSSH ProxyJump\n", p.name, m, pct(ts[i], 0.9), m/base)
			}
		}
		if only("concurrency") {
			per, intact := r.concurrency(*sessions)
			fmt.Printf("\nConcurrency: %d interactive sessions held through the recording bastion: %d intact, bastion memory %.0f KiB per session\n", *sessions, intact, per/1024)
		}
	}
}
