// Package ui drives the agent's web UI in headless Chromium (Debian's
// chromium package, scripts/setup-chromium.sh) through chromedp, against
// real agents on the real engine. Chromium resolves no host name and uses
// no proxy, so it reaches nothing but the loopback agent.
//
// Without chromium the tests skip, loudly; with CI=true they fail.
// `go test ./e2e/ui -run TestUI -ui.screenshots=$PWD/docs/screenshots` also writes
// the screenshots of the main pages the README shows.
package ui
