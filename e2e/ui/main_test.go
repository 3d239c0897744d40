package ui

import (
	"os"
	"testing"

	"github.com/hyperfunc/hyperfunc/e2e/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
