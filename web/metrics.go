package web

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// metrics are the counters exposed on /metrics in the Prometheus text
// format. Label values come from fixed sets, never from user input.
type metrics struct {
	mu         sync.Mutex
	signIns    map[[2]string]uint64 // provider, outcome
	issued     map[string]uint64    // kind: user, ci
	refusals   map[string]uint64    // reason
	reloads    map[string]uint64    // outcome
	policyTime atomic.Int64         // unix seconds of the last good load

	issueLatency histogram
}

// Refusal reasons, the label values of sallyport_certificate_refusals_total.
const (
	reasonUnauthenticated = "unauthenticated"
	reasonNoGrant         = "no_grant"
	reasonNotMember       = "not_member"
	reasonBadKey          = "bad_key"
	reasonBadToken        = "bad_token"
	reasonRateLimited     = "rate_limited"
	reasonRevoked         = "revoked"
	reasonSuspended       = "suspended"
	reasonError           = "error"
)

func newMetrics() *metrics {
	return &metrics{
		signIns:      map[[2]string]uint64{},
		issued:       map[string]uint64{},
		refusals:     map[string]uint64{},
		reloads:      map[string]uint64{},
		issueLatency: newHistogram([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}),
	}
}

func (m *metrics) signIn(provider, outcome string) {
	m.mu.Lock()
	m.signIns[[2]string{provider, outcome}]++
	m.mu.Unlock()
}

func (m *metrics) issue(kind string, d time.Duration) {
	m.mu.Lock()
	m.issued[kind]++
	m.mu.Unlock()
	m.issueLatency.observe(d.Seconds())
}

func (m *metrics) refuse(reason string) {
	m.mu.Lock()
	m.refusals[reason]++
	m.mu.Unlock()
}

func (m *metrics) reload(outcome string) {
	m.mu.Lock()
	m.reloads[outcome]++
	m.mu.Unlock()
}

func (m *metrics) write(w io.Writer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintln(w, "# HELP sallyport_sign_ins_total Sign-ins by provider and outcome.")
	fmt.Fprintln(w, "# TYPE sallyport_sign_ins_total counter")
	for _, k := range sortedKeys2(m.signIns) {
		fmt.Fprintf(w, "sallyport_sign_ins_total{provider=%q,outcome=%q} %d\n", k[0], k[1], m.signIns[k])
	}
	fmt.Fprintln(w, "# HELP sallyport_certificates_issued_total Certificates issued, by kind (user, ci).")
	fmt.Fprintln(w, "# TYPE sallyport_certificates_issued_total counter")
	for _, k := range sortedKeys(m.issued) {
		fmt.Fprintf(w, "sallyport_certificates_issued_total{kind=%q} %d\n", k, m.issued[k])
	}
	fmt.Fprintln(w, "# HELP sallyport_certificate_refusals_total Certificate requests refused, by reason.")
	fmt.Fprintln(w, "# TYPE sallyport_certificate_refusals_total counter")
	for _, k := range sortedKeys(m.refusals) {
		fmt.Fprintf(w, "sallyport_certificate_refusals_total{reason=%q} %d\n", k, m.refusals[k])
	}
	fmt.Fprintln(w, "# HELP sallyport_policy_reloads_total Policy loads, by outcome (ok, refused).")
	fmt.Fprintln(w, "# TYPE sallyport_policy_reloads_total counter")
	for _, k := range sortedKeys(m.reloads) {
		fmt.Fprintf(w, "sallyport_policy_reloads_total{outcome=%q} %d\n", k, m.reloads[k])
	}
	fmt.Fprintln(w, "# HELP sallyport_policy_loaded_timestamp_seconds When the policy in force was loaded.")
	fmt.Fprintln(w, "# TYPE sallyport_policy_loaded_timestamp_seconds gauge")
	fmt.Fprintf(w, "sallyport_policy_loaded_timestamp_seconds %d\n", m.policyTime.Load())
	fmt.Fprintln(w, "# HELP sallyport_certificate_issue_seconds Time to answer a successful certificate request.")
	fmt.Fprintln(w, "# TYPE sallyport_certificate_issue_seconds histogram")
	m.issueLatency.write(w, "sallyport_certificate_issue_seconds")
}

func sortedKeys(m map[string]uint64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sortedKeys2(m map[[2]string]uint64) [][2]string {
	ks := make([][2]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i][0]+"\x00"+ks[i][1] < ks[j][0]+"\x00"+ks[j][1] })
	return ks
}

// histogram is a lock-free Prometheus histogram.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64 // per bucket, not cumulative; last is +Inf
	sum    atomic.Uint64   // float64 bits
	total  atomic.Uint64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v)
	h.counts[i].Add(1)
	h.total.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (h *histogram) write(w io.Writer, name string) {
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", name, strings.TrimSuffix(strconv.FormatFloat(b, 'f', -1, 64), ".0"), cum)
	}
	cum += h.counts[len(h.bounds)].Load()
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, cum)
	fmt.Fprintf(w, "%s_sum %g\n", name, math.Float64frombits(h.sum.Load()))
	fmt.Fprintf(w, "%s_count %d\n", name, cum)
}
