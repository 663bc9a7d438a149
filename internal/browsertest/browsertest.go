// Package browsertest runs the real, headless Chromium of Debian's chromium
// package for tests that must see what a browser does and an HTTP client
// does not: which cookies cross a redirect from another site, what the
// Content-Security-Policy lets run, what a page renders. A browser is
// driven with chromedp over a pipe, gets a fresh temporary profile, and is
// killed, with every process it started, when its test ends. A missing
// Chromium fails the test; it never skips, because .ci/run installs it.
package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Timeout bounds every wait: starting the browser, opening a tab, and each
// call of a Tab's methods.
const Timeout = 30 * time.Second

// Browser is one headless Chromium process.
type Browser struct {
	ctx     context.Context // of the browser's first tab, which owns the process
	pid     int             // of the main process
	dataDir string          // the temporary profile
}

// New starts headless Chromium and kills it, removing its temporary
// profile, when t ends. Chromium runs without its sandbox when the test
// runs as root, which the sandbox refuses.
func New(t testing.TB) *Browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("browsertest: Chromium is required for this test; install Debian's chromium package (apt-get install chromium), as .ci/run does: %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		// Tests reach only loopback servers: the browser resolves no host
		// name but localhost and uses no proxy, so none of Chromium's own
		// services can reach beyond this machine.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
	)
	if os.Getuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	// Without a user-data-dir flag the allocator makes a fresh temporary
	// profile folder for this browser and, after the process has exited,
	// kills the processes still using it and removes it.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// Cancelling the first context kills the browser (SIGKILL through
	// exec.CommandContext) and waits until it and its profile are gone;
	// Chromium also gets SIGKILL if the test binary dies first.
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser and binds its life to the context
	// it is given, so it gets ctx itself, bounded by a timer rather than a
	// deadline.
	if err := within(ctx, cancel, func() error { return chromedp.Do(ctx) }); err != nil {
		t.Fatalf("browsertest: starting %s: %v", path, err)
	}
	b := &Browser{ctx: ctx}
	if p := chromedp.FromContext(ctx).Browser.Process(); p != nil {
		b.pid = p.Pid
		b.dataDir = userDataDir(p.Pid)
	}
	return b
}

// userDataDir reads the --user-data-dir flag of the process pid.
func userDataDir(pid int) string {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	for arg := range bytes.SplitSeq(cmdline, []byte{0}) {
		if dir, ok := bytes.CutPrefix(arg, []byte("--user-data-dir=")); ok {
			return string(dir)
		}
	}
	return ""
}

// within runs f, which uses ctx, and gives up after Timeout, cancelling
// ctx with cancel.
func within(ctx context.Context, cancel context.CancelFunc, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		cancel()
		<-done
		return fmt.Errorf("gave up after %s", Timeout)
	case <-ctx.Done():
		return errors.Join(ctx.Err(), <-done)
	}
}

// Tab is a page in a browser context of its own: cookies, storage and
// cache start empty and are shared with no other Tab, as in a fresh
// profile. Its methods fail the test that opened it.
type Tab struct {
	t   testing.TB
	ctx context.Context

	mu      sync.Mutex
	console []string
}

// NewTab opens a tab in a new browser context and closes both when t ends.
func (b *Browser) NewTab(t testing.TB) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// As in New: the tab lives as long as the context of its first action.
	if err := within(ctx, cancel, func() error { return chromedp.Do(ctx) }); err != nil {
		t.Fatalf("browsertest: opening a tab: %v", err)
	}
	tab := &Tab{t: t, ctx: ctx}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			tab.mu.Lock()
			line := strings.TrimSpace(m.String())
			if m.URL != "" {
				line += " (" + m.URL + ")"
			}
			tab.console = append(tab.console, line)
			tab.mu.Unlock()
		}
	}()
	return tab
}

// Console returns what the tab's pages wrote to the console so far, the
// browser's own messages (such as Content-Security-Policy violations) and
// uncaught exceptions included.
func (tab *Tab) Console() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return slices.Clone(tab.console)
}

// Context is the tab's chromedp context, for chromedp calls the methods do
// not cover; bound it with a timeout such as Timeout.
func (tab *Tab) Context() context.Context { return tab.ctx }

// Do runs steps in the tab, failing the test if one fails or all take
// longer than Timeout.
func (tab *Tab) Do(steps ...chromedp.Action[chromedp.Void]) {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, Timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tab.t.Fatalf("browser: %v\n%s", err, tab.state())
	}
}

// Navigate loads url, following redirects, waits for the load event and
// returns the HTTP status of the document it ends at (0 for one without,
// such as about:blank).
func (tab *Tab) Navigate(url string) int {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, Timeout)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		tab.t.Fatalf("browser: loading %s: %v\n%s", url, err, tab.state())
	}
	if resp == nil {
		return 0
	}
	return int(resp.Status)
}

// Eval evaluates the JavaScript expression js in tab's page, awaiting it
// if it is a promise, and returns its value decoded into T.
func Eval[T any](tab *Tab, js string) T {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, Timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		tab.t.Fatalf("browser: evaluating %s: %v\n%s", js, err, tab.state())
	}
	return v
}

// WaitFor waits until the JavaScript expression js is truthy in the page,
// across page loads, and fails the test after Timeout with what the page
// shows.
func (tab *Tab) WaitFor(js string) {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, Timeout)
	defer cancel()
	var last error
	for {
		// A navigation ends a poll with an error; poll again in the new
		// document until the deadline.
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(20*time.Millisecond)))
		if err == nil {
			return
		}
		if ctx.Err() == nil && !errors.Is(err, chromedp.ErrPollingTimeout) {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				err = fmt.Errorf("%w (the last poll failed: %v)", err, last)
			}
			tab.t.Fatalf("browser: waiting for %s: %v\n%s", js, err, tab.state())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Cookies returns the cookies the browser holds for urls, HttpOnly ones
// included, as the browser stores them.
func (tab *Tab) Cookies(urls ...string) []*network.Cookie {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, Timeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: urls})
	if err != nil {
		tab.t.Fatalf("browser: reading cookies: %v", err)
	}
	return res.Cookies
}

// state describes what the tab shows, for failure messages.
func (tab *Tab) state() string {
	ctx, cancel := context.WithTimeout(tab.ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + (document.body ? document.body.innerText : "(no body)")`))
	if err != nil {
		return fmt.Sprintf("(the page could not be read: %v)", err)
	}
	const max = 3000
	if len(v) > max {
		v = v[:max] + "…"
	}
	msg := "the page at " + v
	if c := tab.Console(); len(c) > 0 {
		msg += "\nconsole:\n" + strings.Join(c, "\n")
	}
	return msg
}
