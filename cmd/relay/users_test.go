package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"relay/relay"
	"relay/store/sqlite"
)

const cliJWTSecret = "cli-test-secret-0123456789abcdefghijklmnop"

func TestUsersAndTokens(t *testing.T) {
	cfg := writeConfig(t)
	t.Setenv("RELAY_JWT_SECRET", cliJWTSecret)
	out, err := runCLI(t, "-config", cfg, "users", "create", "--name", "ann", "--admin")
	if err != nil || !strings.Contains(out, "ann\tadmin") {
		t.Fatalf("users create: %q %v", out, err)
	}
	if _, err := runCLI(t, "-config", cfg, "users", "create", "--name", "ann"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := runCLI(t, "-config", cfg, "users", "create"); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("no name: %v", err)
	}
	if _, err := runCLI(t, "-config", cfg, "users", "create", "--name", "ben"); err != nil {
		t.Fatal(err)
	}
	list, err := runCLI(t, "-config", cfg, "users", "list")
	if err != nil || !strings.Contains(list, "ann") || !strings.Contains(list, "ben") || !strings.Contains(list, "user") {
		t.Fatalf("users list:\n%s %v", list, err)
	}
	tok, err := runCLI(t, "-config", cfg, "token", "issue", "--user", "ben", "--ttl", "1h")
	if err != nil {
		t.Fatal(err)
	}
	id, err := relay.ParseToken([]byte(cliJWTSecret), strings.TrimSpace(tok))
	if err != nil || id != 2 {
		t.Fatalf("issued token names %d: %v", id, err)
	}
	// By id too.
	if tok, err = runCLI(t, "-config", cfg, "token", "issue", "--user", "1"); err != nil {
		t.Fatal(err)
	}
	if id, _ := relay.ParseToken([]byte(cliJWTSecret), strings.TrimSpace(tok)); id != 1 {
		t.Fatalf("token by id names %d", id)
	}
	if _, err := runCLI(t, "-config", cfg, "token", "issue", "--user", "nobody"); err == nil || !strings.Contains(err.Error(), "no user") {
		t.Fatalf("unknown user: %v", err)
	}
	// A key created for a user carries the user id.
	secret, err := runCLI(t, "-config", cfg, "keys", "create", "--name", "ben-key", "--user", "ben")
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(filepath.Join(filepath.Dir(cfg), "relay.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	k, err := st.KeyByHash(context.Background(), relay.HashKey(strings.TrimSpace(secret)))
	st.Close()
	if err != nil || k.UserID != 2 {
		t.Fatalf("key owner: %+v %v", k, err)
	}
	if list, _ := runCLI(t, "-config", cfg, "keys", "list"); !strings.Contains(list, "USER") || !strings.Contains(list, "false  2 ") {
		t.Fatalf("keys list shows no owner:\n%s", list)
	}
	if _, err := runCLI(t, "-config", cfg, "keys", "create", "--name", "x", "--user", "nobody"); err == nil {
		t.Fatal("key for an unknown user created")
	}
	// Without a secret nothing is issued, and the error does not echo one.
	t.Setenv("RELAY_JWT_SECRET", "")
	t.Setenv("RELAY_AUTH_JWT_SECRET", "")
	if _, err := runCLI(t, "-config", cfg, "token", "issue", "--user", "ben"); err == nil || !strings.Contains(err.Error(), "jwt_secret") {
		t.Fatalf("no secret: %v", err)
	}
	t.Setenv("RELAY_JWT_SECRET", "too-short")
	if _, err := runCLI(t, "-config", cfg, "token", "issue", "--user", "ben"); err == nil || strings.Contains(err.Error(), "too-short") {
		t.Fatalf("short secret: %v", err)
	}
}
