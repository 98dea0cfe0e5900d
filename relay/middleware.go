package relay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/sync/singleflight"

	"relay/adaptor"
	"relay/store"
)

const (
	ctxKey       = "relay.key"
	ctxRequestID = "relay.request_id"
)

// recovery turns a panic into a logged 500 in OpenAI's error shape (or ends a started stream).
func (s *Server) recovery() gin.HandlerFunc {
	return s.recoveryWith(func(c *gin.Context) {
		writeOpenAIError(c, adaptor.NewError(500, adaptor.TypeServer, "internal_error", "internal error"))
	})
}

// recoveryWith turns a panic into a logged 500 that writeInternal renders in the surface's error shape,
// when nothing of the answer went out yet.
func (s *Server) recoveryWith(writeInternal func(*gin.Context)) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("panic serving request", "request_id", c.GetString(ctxRequestID), "path", c.FullPath(),
					"panic", r, "stack", string(debug.Stack()))
				if !c.Writer.Written() {
					writeInternal(c)
				}
				c.Abort()
			}
		}()
		c.Next()
	}
}

// requestID gives every request an id, echoed in X-Request-Id (the SDKs surface it).
func (s *Server) requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := adaptor.NewID("req_")
		c.Set(ctxRequestID, id)
		c.Header("X-Request-Id", id)
		c.Next()
	}
}

// accessLog logs one line per request; off by default.
func (s *Server) accessLog() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		s.log.Info("request", "request_id", c.GetString(ctxRequestID), "method", c.Request.Method, "path", c.Request.URL.Path,
			"status", c.Writer.Status(), "duration", time.Since(start))
	}
}

// track counts in-flight requests so shutdown can wait for them.
func (s *Server) track() gin.HandlerFunc {
	return func(c *gin.Context) {
		s.inflight.Add(1)
		s.active.Add(1)
		s.seen.Store(true)
		defer func() {
			s.active.Add(-1)
			s.inflight.Done()
		}()
		c.Next()
	}
}

// HashKey is how relay keys are stored: hex SHA-256 of the secret. Keys are 190 bits of randomness, so
// a fast hash is enough; no secret is kept.
func HashKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// auth checks the relay key in Authorization: Bearer (401 in OpenAI's shape otherwise).
func (s *Server) auth() gin.HandlerFunc {
	return func(c *gin.Context) {
		secret, ok := bearer(c.GetHeader("Authorization"))
		if !ok {
			writeOpenAIError(c, &adaptor.Error{Status: 401, Type: adaptor.TypeInvalidRequest, Code: "missing_api_key",
				Message: "You didn't provide an API key. Send it as Authorization: Bearer <key>."})
			c.Abort()
			return
		}
		key, err := s.keys.lookup(c.Request.Context(), secret)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				writeOpenAIError(c, &adaptor.Error{Status: 401, Type: adaptor.TypeInvalidRequest, Code: "invalid_api_key",
					Message: "Incorrect API key provided."})
			} else {
				s.logKeyLookup(c, err)
				writeOpenAIError(c, adaptor.NewError(503, adaptor.TypeServer, "store_unavailable", "cannot check the API key right now"))
			}
			c.Abort()
			return
		}
		if !key.Active() {
			writeOpenAIError(c, &adaptor.Error{Status: 401, Type: adaptor.TypeInvalidRequest, Code: "invalid_api_key",
				Message: "This API key has been revoked."})
			c.Abort()
			return
		}
		c.Set(ctxKey, key)
		c.Next()
	}
}

// logKeyLookup logs a failed key lookup, unless the caller left while it waited: that is no store failure.
func (s *Server) logKeyLookup(c *gin.Context, err error) {
	if c.Request.Context().Err() == nil {
		s.log.Error("key lookup failed", "err", err)
	}
}

func bearer(h string) (string, bool) {
	const p = "Bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	s := strings.TrimSpace(h[len(p):])
	return s, s != ""
}

// keyCache keeps looked-up keys for a short time so the hot path does not read the database on every
// request. Unknown keys are not cached (a key created from the CLI works at once).
//
// A miss asks the store through a singleflight group, from the group's own goroutine: requests that miss
// on the same key together, such as a burst of new streams just after its entry expired, share one query
// instead of sending a thousand identical ones, and a caller that leaves stops waiting without failing
// the others.
type keyCache struct {
	store  store.Keys
	ttl    time.Duration
	mu     sync.RWMutex
	m      map[string]cachedKey
	gen    uint64 // bumped by forget: a lookup that started before does not cache what it read
	flight singleflight.Group
}

type cachedKey struct {
	key     *store.Key
	expires time.Time
}

const (
	keyCacheMax = 10000
	// keyLookupTimeout bounds a shared lookup, which runs on no request's context: one caller's
	// disconnect must not fail the others waiting for the same answer.
	keyLookupTimeout = 10 * time.Second
)

func (k *keyCache) lookup(ctx context.Context, secret string) (*store.Key, error) {
	hash := HashKey(secret)
	if k.ttl > 0 {
		k.mu.RLock()
		e, ok := k.m[hash]
		k.mu.RUnlock()
		if ok && time.Now().Before(e.expires) {
			return e.key, nil
		}
	}
	ch := k.flight.DoChan(hash, func() (any, error) { return k.load(hash) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*store.Key), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// load reads the key from the store and caches it.
func (k *keyCache) load(hash string) (*store.Key, error) {
	k.mu.RLock()
	gen := k.gen
	k.mu.RUnlock()
	ctx, cancel := context.WithTimeout(context.Background(), keyLookupTimeout)
	defer cancel()
	key, err := k.store.KeyByHash(ctx, hash)
	if err != nil {
		return nil, err
	}
	if k.ttl > 0 {
		k.mu.Lock()
		if k.gen == gen {
			if len(k.m) >= keyCacheMax {
				k.m = map[string]cachedKey{}
			}
			k.m[hash] = cachedKey{key: &key, expires: time.Now().Add(k.ttl)}
		}
		k.mu.Unlock()
	}
	return &key, nil
}

// forget drops every cached key (after a revoke in this process).
func (k *keyCache) forget() {
	k.mu.Lock()
	k.gen++
	k.m = map[string]cachedKey{}
	k.mu.Unlock()
}
