package relay

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"relay/adaptor"
	"relay/store"
)

// JWT auth for the user-facing surfaces (session surface /v1/chat/session..., strategy surface /bp/...):
// HS256 tokens with an expiry that name a user (sub = user id). The user is read from the store on each
// request, so a deleted user or a changed role takes effect at once.

// JWTConfig is auth.jwt_secret and auth.token_ttl.
type JWTConfig struct {
	// Secret signs and checks tokens (HS256, at least 32 bytes). Write it as ${ENV_NAME}; when empty,
	// RELAY_JWT_SECRET (or RELAY_AUTH_JWT_SECRET) is used. Without a secret the JWT routes answer 503.
	Secret string `mapstructure:"jwt_secret"`
	// TokenTTL is the lifetime of issued tokens (default 24h).
	TokenTTL time.Duration `mapstructure:"token_ttl"`
}

// MinJWTSecret is the shortest HS256 secret accepted (bytes).
const MinJWTSecret = 32

// DefaultTokenTTL is auth.token_ttl when unset.
const DefaultTokenTTL = 24 * time.Hour

const jwtIssuer = "relay"

// ctxUser is the gin context key of the authenticated store.User.
const ctxUser = "relay.user"

// JWTKey resolves the signing secret: ${ENV} references expanded, the environment as fallback, and the
// minimum length checked.
func (c JWTConfig) JWTKey() ([]byte, error) {
	var missing []string
	secret := expand(c.Secret, &missing)
	if secret == "" {
		secret = os.Getenv("RELAY_JWT_SECRET")
	}
	if secret == "" {
		secret = os.Getenv("RELAY_AUTH_JWT_SECRET")
	}
	if secret == "" {
		return nil, errors.New("auth.jwt_secret is not set (set RELAY_JWT_SECRET)")
	}
	if len(secret) < MinJWTSecret {
		return nil, fmt.Errorf("auth.jwt_secret must be at least %d bytes", MinJWTSecret)
	}
	return []byte(secret), nil
}

// TTL is the configured token lifetime or the default.
func (c JWTConfig) TTL() time.Duration {
	if c.TokenTTL > 0 {
		return c.TokenTTL
	}
	return DefaultTokenTTL
}

// userClaims are the token's claims: the registered ones (sub = user id, exp, iat, iss) and, for
// readers' convenience, the user's name and role at issue time (the store's role is what counts).
type userClaims struct {
	Name string `json:"name,omitempty"`
	Role string `json:"role,omitempty"`
	jwt.RegisteredClaims
}

// IssueToken signs a token for u valid for ttl from now.
func IssueToken(key []byte, u store.User, ttl time.Duration, now time.Time) (string, error) {
	if u.ID == 0 {
		return "", errors.New("token: user has no id")
	}
	claims := userClaims{Name: u.Name, Role: u.Role, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   strconv.FormatInt(u.ID, 10),
		Issuer:    jwtIssuer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
}

// ParseToken checks a token's signature (HS256 only), expiry (required) and issuer, and returns the
// user id it names.
func ParseToken(key []byte, token string) (int64, error) {
	var claims userClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired(),
		jwt.WithIssuer(jwtIssuer), jwt.WithLeeway(5*time.Second))
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseInt(claims.Subject, 10, 64)
	if err != nil || id <= 0 {
		return 0, errors.New("token: subject is not a user id")
	}
	return id, nil
}

// AuthErrorWriter renders an auth failure in a surface's own error shape.
type AuthErrorWriter func(c *gin.Context, status int, code, msg string)

// jwtAuth checks the JWT in Authorization: Bearer and puts the user in the context (userFrom). Failures
// answer through fail: 401 missing/invalid/expired token or unknown user, 503 when no secret is
// configured or the store cannot say. Nothing of the token or the secret is echoed.
func (s *Server) jwtAuth(fail AuthErrorWriter) gin.HandlerFunc {
	key, keyErr := s.cfg.Auth.JWT.JWTKey()
	if keyErr != nil {
		s.jwtWarn.Do(func() { s.log.Warn("JWT routes disabled: " + keyErr.Error()) })
	}
	return func(c *gin.Context) {
		if keyErr != nil {
			fail(c, http.StatusServiceUnavailable, "jwt_not_configured", "token auth is not configured on this relay")
			c.Abort()
			return
		}
		tok, ok := bearer(c.GetHeader("Authorization"))
		if !ok && isWebSocketUpgrade(c.Request) {
			// Browsers cannot set headers on a WebSocket: the token may come as ?token=.
			tok = c.Query("token")
			ok = tok != ""
		}
		if !ok {
			fail(c, http.StatusUnauthorized, "missing_token", "send a token as Authorization: Bearer <jwt>")
			c.Abort()
			return
		}
		id, err := ParseToken(key, tok)
		if err != nil {
			msg := "invalid token"
			if errors.Is(err, jwt.ErrTokenExpired) {
				msg = "token has expired"
			}
			fail(c, http.StatusUnauthorized, "invalid_token", msg)
			c.Abort()
			return
		}
		u, err := s.store.UserByID(c.Request.Context(), id)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				fail(c, http.StatusUnauthorized, "invalid_token", "the token's user does not exist")
			} else {
				s.log.Error("user lookup failed", "err", err)
				fail(c, http.StatusServiceUnavailable, "store_unavailable", "cannot check the token right now")
			}
			c.Abort()
			return
		}
		c.Set(ctxUser, u)
		c.Next()
	}
}

// requireAdmin answers 403 through fail unless the JWT's user is an admin. Use it after jwtAuth.
func requireAdmin(fail AuthErrorWriter) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !userFrom(c).IsAdmin() {
			fail(c, http.StatusForbidden, "forbidden", "this route needs the admin role")
			c.Abort()
			return
		}
		c.Next()
	}
}

// userFrom is the user jwtAuth authenticated (the zero User, which owns nothing, when none).
func userFrom(c *gin.Context) store.User {
	u, _ := c.Get(ctxUser)
	user, _ := u.(store.User)
	return user
}

// writeCodeMsg is the session surface's error shape (go-zero's {code, msg}): the HTTP status, and the
// same number as code.
func writeCodeMsg(c *gin.Context, status int, _ string, msg string) {
	b := append(make([]byte, 0, 64), `{"code":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"msg":`...)
	b = adaptor.AppendJSONString(b, strings.TrimSpace(msg))
	c.Data(status, "application/json", append(b, '}'))
}

func isWebSocketUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}
