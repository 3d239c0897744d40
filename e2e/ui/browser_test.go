package ui

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

var screenshots = flag.String("ui.screenshots", "", "directory to write the UI's screenshots into (PNG); default: the test's temp dir")

// waitTimeout only catches hangs: a busy 2-core machine starting
// containers under gVisor is slow, never this slow.
const waitTimeout = 3 * time.Minute

// chromiumPath finds Debian's chromium. Missing, the test skips with a
// loud note, or fails under CI=true (CI must not skip silently).
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium is not installed: the web UI tests need it (sudo bash scripts/setup-chromium.sh)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "=== SKIP (loud): "+msg)
	t.Skip(msg)
	return ""
}

// newBrowser starts a headless Chromium for the test and answers a tab's
// context; it is closed when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox refuses to start
		// No network beyond loopback: no name resolves (the agent is
		// addressed by IP) and no proxy is asked.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// otherSession is a tab in a fresh browser context of the same browser:
// its own cookies, as another person's browser would have.
func otherSession(t *testing.T, parent context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("new browser context: %v", err)
	}
	return ctx
}

// pageText is what the page shows, for failure messages.
func pageText(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('error').textContent + ' | ' + document.getElementById('view').innerText.slice(0, 2000)`))
	return s
}

// do runs browser steps, bounded by waitTimeout, failing the test with
// what was being done and what the page shows.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("%s: %v\npage: %s", what, err, pageText(ctx))
	}
}

// get runs one browser action that answers a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatalf("%s: %v\npage: %s", what, err, pageText(ctx))
	}
	return v
}

// eval evaluates JavaScript in the page, awaiting a promise it makes.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	return get(t, ctx, "evaluate "+expr, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// until waits for a JavaScript condition to hold in the page.
func until(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	get(t, ctx, what, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(waitTimeout)))
}

// visible waits for a CSS selector to match a visible element.
func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// text reads the text of the first element a CSS selector matches.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return get(t, ctx, "text of "+sel, chromedp.TextContent(chromedp.CSS(sel)))
}

// screenshot saves the tab's viewport as name.png (-ui.screenshots, or
// the test's temp dir).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := *screenshots
	if dir == "" {
		dir = t.TempDir()
	}
	png := get(t, ctx, "screenshot "+name, chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// download clicks sel in a tab and answers the bytes of the file the
// browser saved.
func download(t *testing.T, ctx context.Context, sel string) []byte {
	t.Helper()
	dir := t.TempDir()
	_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: new(true),
	})
	if err != nil {
		t.Fatalf("allow downloads: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	events := chromedp.BrowserEvents(tctx, browser.DownloadProgress) // subscribed before the click
	do(t, ctx, "click "+sel, chromedp.Click(chromedp.CSS(sel)))
	for e, err := range events {
		if err != nil {
			t.Fatalf("waiting for the download: %v", err)
		}
		switch e.State {
		case browser.DownloadProgressStateCompleted:
			b, err := os.ReadFile(filepath.Join(dir, e.GUID))
			if err != nil {
				t.Fatal(err)
			}
			return b
		case browser.DownloadProgressStateCanceled:
			t.Fatal("the download was canceled")
		}
	}
	t.Fatal("no download")
	return nil
}
