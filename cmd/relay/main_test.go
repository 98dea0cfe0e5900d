package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"relay/adaptor/kinds"
	"relay/relay"
	"relay/store"
	"relay/store/sqlite"
)

func writeConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	cfg := "listen: 127.0.0.1:0\nstore:\n  path: " + filepath.Join(dir, "relay.db") + "\nchannels:\n  - {name: demo, kind: demo, enabled: true, models: [demo]}\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(args, &out, &errOut)
	return out.String(), err
}

func TestKeysLifecycle(t *testing.T) {
	cfg := writeConfig(t)
	secret, err := runCLI(t, "-config", cfg, "keys", "create", "--name", "alice", "--models", "demo, gpt-4o")
	if err != nil {
		t.Fatal(err)
	}
	secret = strings.TrimSpace(secret)
	if !strings.HasPrefix(secret, "sk-relay-") || len(secret) != 41 {
		t.Fatalf("secret %q", secret)
	}
	list, err := runCLI(t, "-config", cfg, "keys", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, "alice") || !strings.Contains(list, "demo,gpt-4o") || !strings.Contains(list, "active") || strings.Contains(list, secret) {
		t.Fatalf("list:\n%s", list)
	}
	// Only the hash is stored: the secret appears nowhere in the database files.
	dir := filepath.Dir(cfg)
	files, _ := filepath.Glob(filepath.Join(dir, "relay.db*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte(secret)) {
			t.Fatalf("%s contains the secret", f)
		}
		if f == filepath.Join(dir, "relay.db") && !bytes.Contains(b, []byte(relay.HashKey(secret))) && len(files) == 1 {
			t.Fatalf("%s lacks the hash", f)
		}
	}
	if _, err := runCLI(t, "-config", cfg, "keys", "revoke", "alice"); err != nil {
		t.Fatal(err)
	}
	list, _ = runCLI(t, "-config", cfg, "keys", "list")
	if !strings.Contains(list, "revoked") {
		t.Fatalf("list after revoke:\n%s", list)
	}
	if _, err := runCLI(t, "-config", cfg, "keys", "revoke", "alice"); err == nil || !strings.Contains(err.Error(), "no active key") {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := runCLI(t, "-config", cfg, "keys", "create"); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("create without name: %v", err)
	}
}

func TestMigrateVersionAndBadConfig(t *testing.T) {
	cfg := writeConfig(t)
	if out, err := runCLI(t, "-config", cfg, "migrate"); err != nil || !strings.Contains(out, "migrations applied") {
		t.Fatalf("migrate: %q %v", out, err)
	}
	if out, err := runCLI(t, "version"); err != nil || !strings.HasPrefix(out, "relay ") {
		t.Fatalf("version: %q %v", out, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("log:\n  format: xml\n"), 0o600)
	if _, err := runCLI(t, "-config", bad, "serve"); err == nil || !strings.Contains(err.Error(), "log.format") {
		t.Fatalf("bad config: %v", err)
	}
	if _, err := runCLI(t, "-config", cfg, "frobnicate"); err == nil {
		t.Fatal("unknown command accepted")
	}
}

func TestNewSecretIsUniformAlphabet(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		s, err := NewSecret()
		if err != nil || seen[s] || len(s) != 41 {
			t.Fatalf("secret %q err %v dup %v", s, err, seen[s])
		}
		seen[s] = true
		for _, c := range s[9:] {
			if !strings.ContainsRune("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", c) {
				t.Fatalf("bad char in %q", s)
			}
		}
	}
}

func TestReloadConfigAndWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	write := func(models string) {
		cfg := "store:\n  path: " + filepath.Join(dir, "relay.db") + "\nchannels:\n  - {name: demo, kind: demo, enabled: true, models: [" + models + "]}\n"
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("demo")
	cfg, err := relay.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	chans, _ := cfg.BuildChannels(kinds.All())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(cfg.Store.Path, sqlite.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := relay.NewServer(cfg, st, chans, log)
	changed := watchConfig(path, log)
	if changed == nil {
		t.Fatal("no watch")
	}
	// A bad file is refused and the config in force stays.
	os.WriteFile(path, []byte("channels:\n  - {name: x, kind: nope, models: [a]}\n"), 0o600)
	select {
	case <-changed:
	case <-time.After(3 * time.Second):
		t.Fatal("file change not seen")
	}
	if reloadConfig(path, srv, log) {
		t.Fatal("bad config accepted")
	}
	write("demo, demo2")
	select {
	case <-changed:
	case <-time.After(3 * time.Second):
		t.Fatal("file change not seen")
	}
	if !reloadConfig(path, srv, log) {
		t.Fatal("good config refused")
	}
	key := "sk-relay-reload-test"
	st.CreateKey(context.Background(), store.Key{Name: "r", Prefix: "sk", Hash: relay.HashKey(key)})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	srv.Handler().ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `"demo2"`) {
		t.Fatalf("models after reload: %s", rec.Body.String())
	}
	srv.Shutdown(context.Background())
}
