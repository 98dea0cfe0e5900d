package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVariantFlag(t *testing.T) {
	var v variantList
	for _, s := range []string{"base", "nice0:RELAY_STORE_WRITER_NICE=0", "two:A=1,B=x=y", "built@/tmp/relay-x:C=2"} {
		if err := v.Set(s); err != nil {
			t.Fatalf("Set(%q): %v", s, err)
		}
	}
	if len(v) != 4 || v[0].label != "base" || len(v[0].env) != 0 || v[0].bin != "" ||
		v[1].env.String() != "RELAY_STORE_WRITER_NICE=0" || v[2].env.String() != "A=1 B=x=y" ||
		v[3].label != "built" || v[3].bin != "/tmp/relay-x" || v[3].env.String() != "C=2" {
		t.Errorf("parsed %+v", v)
	}
	for _, bad := range []string{"", ":A=1", "base", "floor", "direct", "floor-bare", "has space", "x:NOEQUALS", "y:=1", "z:A=1,", "w@:A=1", "@/bin/relay"} {
		if err := v.Set(bad); err == nil {
			t.Errorf("Set(%q): want an error", bad)
		}
	}
	if _, err := parsePairFlags([]string{"-block", "0"}, os.Stderr); err == nil {
		t.Error("-block 0: want an error")
	}
	cfg, err := parsePairFlags(nil, os.Stderr)
	if err != nil || len(cfg.variants) != 1 || cfg.variants[0].label != "relay" {
		t.Errorf("defaults: %+v, %v", cfg.variants, err)
	}
}

// TestPairSmoke builds the relay and runs a tiny paired comparison of two variants end to end.
func TestPairSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay; skipped with -short")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	var stdout, stderr bytes.Buffer
	out := t.TempDir()
	args := []string{"-variant", "a", "-variant", "b:RELAY_STORE_FLUSH_INTERVAL=20ms", "-runs", "2", "-blocks", "2",
		"-block", "15", "-warmup", "5", "-gap", "5ms", "-stream", "-out", out}
	if err := runPair(args, &stdout, &stderr); err != nil {
		t.Fatalf("pair: %v\n%s", err, stderr.String())
	}
	md := stdout.String()
	if files, _ := filepath.Glob(filepath.Join(out, "*-pair-stream.md")); len(files) != 1 {
		t.Errorf("want one -pair-stream.md in %s, got %v", out, files)
	}
	for _, want := range []string{"| direct |", "| floor |", "| a |", "| b |", "## Time to the first event",
		"**b**: environment `RELAY_STORE_FLUSH_INTERVAL=20ms`", "| 0/60 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Count(md, "| 0/60 |") != 4 {
		t.Errorf("want 60 requests and no errors on each of the 4 lanes:\n%s", md)
	}
	if strings.Contains(md, "%!") || strings.Contains(md, "NaN") {
		t.Errorf("report has a formatting error:\n%s", md)
	}

	// Non-stream with the bare floors and the default single relay: no columns against a first variant.
	stdout.Reset()
	args = []string{"-bare", "-runs", "1", "-blocks", "2", "-block", "10", "-warmup", "5", "-gap", "5ms"}
	if err := runPair(args, &stdout, &stderr); err != nil {
		t.Fatalf("pair -bare: %v\n%s", err, stderr.String())
	}
	md = stdout.String()
	if strings.Count(md, "| 0/20 |") != 5 {
		t.Errorf("want 20 requests and no errors on each of direct, floor, floor-bare, floor-bare-client and relay:\n%s", md)
	}
	if strings.Contains(md, "p99 − relay") || strings.Contains(md, "Time to the first event") {
		t.Errorf("columns against a first variant or a TTFB table without cause:\n%s", md)
	}
	if _, err := parsePairFlags([]string{"-bare", "-stream"}, io.Discard); err == nil {
		t.Error("-bare -stream: want an error")
	}
}

// TestPairVariantEnv shows that a variant's environment reaches its relay: a value the relay refuses
// stops the run, naming the variant.
func TestPairVariantEnv(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay; skipped with -short")
	}
	var stdout, stderr bytes.Buffer
	err := runPair([]string{"-variant", "ok", "-variant", "bad:RELAY_STORE_WRITER_NICE=99", "-runs", "1", "-blocks", "1", "-block", "1", "-warmup", "0"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "variant bad") || !strings.Contains(err.Error(), "writer_nice") {
		t.Fatalf("want the bad variant's start to fail on writer_nice, got %v", err)
	}
	// A variant's own binary is the one started.
	err = runPair([]string{"-variant", "ok", "-variant", "other@/nonexistent/relay", "-runs", "1", "-blocks", "1", "-block", "1", "-warmup", "0"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "variant other") || !strings.Contains(err.Error(), "/nonexistent/relay") {
		t.Fatalf("want the variant's own binary to be started (and missing), got %v", err)
	}
}
