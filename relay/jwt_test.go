package relay_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"relay/relay"
	"relay/store"
)

const testJWTSecret = "test-secret-0123456789abcdef0123456789" // 38 bytes

func TestJWTIssueAndParse(t *testing.T) {
	key := []byte(testJWTSecret)
	now := time.Now()
	u := store.User{ID: 42, Name: "ann", Role: store.RoleUser}
	tok, err := relay.IssueToken(key, u, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := relay.ParseToken(key, tok); err != nil || id != 42 {
		t.Fatalf("ParseToken: %d %v", id, err)
	}
	// Another secret: bad signature.
	if _, err := relay.ParseToken([]byte("another-secret-0123456789abcdef012345"), tok); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("other secret: %v", err)
	}
	// Tampered payload.
	parts := strings.Split(tok, ".")
	if _, err := relay.ParseToken(key, parts[0]+"."+parts[1]+"x."+parts[2]); err == nil {
		t.Fatal("tampered token accepted")
	}
	// Expired.
	old, _ := relay.IssueToken(key, u, time.Minute, now.Add(-time.Hour))
	if _, err := relay.ParseToken(key, old); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	// alg none, HS512 and a token without exp are refused.
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "42", "iss": "relay", "exp": now.Add(time.Hour).Unix()}).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "42", "iss": "relay", "exp": now.Add(time.Hour).Unix()}).SignedString(key)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "42", "iss": "relay"}).SignedString(key)
	badSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "ann", "iss": "relay", "exp": now.Add(time.Hour).Unix()}).SignedString(key)
	otherIss, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "42", "iss": "x", "exp": now.Add(time.Hour).Unix()}).SignedString(key)
	for name, tok := range map[string]string{"none": none, "hs512": hs512, "no exp": noExp, "bad sub": badSub, "issuer": otherIss, "garbage": "a.b.c"} {
		if _, err := relay.ParseToken(key, tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := relay.IssueToken(key, store.User{Name: "no id"}, time.Hour, now); err == nil {
		t.Error("token for a user without id")
	}
}

func TestJWTConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("auth:\n  key_cache_ttl: 5s\n  jwt_secret: ${TEST_RELAY_JWT}\n  token_ttl: 2h\n"+
		"sessions:\n  context_turns: 3\n  log: false\n  models:\n    - {id: 7, name: Demo, code: demo, logo: /d.png}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_RELAY_JWT", testJWTSecret)
	t.Setenv("RELAY_JWT_SECRET", "")
	cfg, err := relay.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Auth.KeyCacheTTL != 5*time.Second || cfg.Auth.JWT.TTL() != 2*time.Hour {
		t.Fatalf("auth: %+v", cfg.Auth)
	}
	key, err := cfg.Auth.JWT.JWTKey()
	if err != nil || string(key) != testJWTSecret {
		t.Fatalf("JWTKey: %q %v", key, err)
	}
	if cfg.Sessions.LogEnabled() || len(cfg.Sessions.Models) != 1 || cfg.Sessions.Models[0].Code != "demo" || cfg.Sessions.Models[0].ID != 7 {
		t.Fatalf("sessions: %+v", cfg.Sessions)
	}
	t.Setenv("TEST_RELAY_JWT", "short")
	if _, err := cfg.Auth.JWT.JWTKey(); err == nil || strings.Contains(err.Error(), "short") {
		t.Fatalf("short secret: %v (must be refused without echoing it)", err)
	}
	t.Setenv("TEST_RELAY_JWT", "")
	if _, err := cfg.Auth.JWT.JWTKey(); err == nil {
		t.Fatal("no secret accepted")
	}
	t.Setenv("RELAY_JWT_SECRET", testJWTSecret)
	if _, err := cfg.Auth.JWT.JWTKey(); err != nil {
		t.Fatalf("RELAY_JWT_SECRET fallback: %v", err)
	}
	def, _ := relay.LoadConfig("")
	if def.Auth.JWT.TTL() != relay.DefaultTokenTTL || !def.Sessions.LogEnabled() {
		t.Fatalf("defaults: %+v %+v", def.Auth, def.Sessions)
	}
}
