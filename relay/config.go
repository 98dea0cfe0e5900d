package relay

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"relay/adaptor"
)

// Config is the relay's configuration: config.yaml overridden by RELAY_* environment variables
// (RELAY_LISTEN, RELAY_STORE_PATH, RELAY_LOG_FORMAT, ...).
type Config struct {
	Listen   string          `mapstructure:"listen"`
	Log      LogConfig       `mapstructure:"log"`
	Server   ServerConfig    `mapstructure:"server"`
	Auth     AuthConfig      `mapstructure:"auth"`
	Store    StoreConfig     `mapstructure:"store"`
	Channels []ChannelConfig `mapstructure:"channels"`
	// Workflows maps work_id to a channel and app key (workflow surface, seed chat.api); Callbacks
	// tunes the delivery of asynchronous (is_batch) results.
	Workflows WorkflowsConfig `mapstructure:"workflows"`
	Callbacks CallbacksConfig `mapstructure:"callbacks"`
	Sessions  SessionsConfig  `mapstructure:"sessions"` // session surface (session_config.go)

	// Strategy surface: top-level strategies, instructions, credit_groups, bp_app_id (strategy_config.go).
	StrategySurfaceConfig `mapstructure:",squash"`
}

// WorkflowsConfig configures the workflow surface and the asynchronous job pool.
type WorkflowsConfig struct {
	// Concurrency is how many is_batch jobs run their upstream call at once.
	Concurrency int `mapstructure:"concurrency"`
	// JobTimeout bounds one job's upstream call (the channel's own timeout applies as well).
	JobTimeout time.Duration `mapstructure:"job_timeout"`
	// Apps are the workflows clients name with work_id.
	Apps []WorkflowConfig `mapstructure:"apps"`
}

// WorkflowConfig is one workflow: a work_id served by a channel with the workflow's own app key.
type WorkflowConfig struct {
	WorkID string `mapstructure:"work_id"`
	// EventType is the kind of workflow backend (default fastgpt); it must equal the channel's kind.
	EventType string `mapstructure:"event_type"`
	// Channel names the channel that serves the workflow.
	Channel string `mapstructure:"channel"`
	// AppKey is the workflow's own upstream key (FastGPT app key), usually ${ENV}; empty uses the
	// channel's keys. A workflow whose key references an unset variable is unavailable (503).
	AppKey string `mapstructure:"app_key"`
	// AllowedKeys lists the names of the relay keys that may use the workflow; empty allows every key.
	AllowedKeys []string `mapstructure:"allowed_keys"`
}

// CallbacksConfig tunes callback delivery of is_batch results.
type CallbacksConfig struct {
	// Secret signs every callback body (HMAC-SHA256, X-Relay-Signature); ${ENV} or
	// RELAY_CALLBACKS_SECRET. Without it the relay refuses requests that name a callback.
	Secret string `mapstructure:"secret"`
	// AllowPrivate lets callbacks reach loopback, private and link-local addresses (tests, trusted
	// networks). Off, such destinations are refused at submission and again at dial time.
	AllowPrivate bool `mapstructure:"allow_private"`
	// Concurrency is how many deliveries run at once.
	Concurrency int `mapstructure:"concurrency"`
	// Timeout bounds one delivery attempt.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxAttempts and MaxAge (from when the result was ready) bound the retries; then the job is
	// callback_failed.
	MaxAttempts int           `mapstructure:"max_attempts"`
	MaxAge      time.Duration `mapstructure:"max_age"`
	// Retries wait InitialBackoff, doubling up to MaxBackoff, each with random jitter.
	InitialBackoff time.Duration `mapstructure:"initial_backoff"`
	MaxBackoff     time.Duration `mapstructure:"max_backoff"`
}

// LogConfig selects the slog handler.
type LogConfig struct {
	Format    string `mapstructure:"format"` // text or json
	Level     string `mapstructure:"level"`  // debug, info, warn, error
	AccessLog bool   `mapstructure:"access_log"`
}

// ServerConfig holds HTTP limits.
type ServerConfig struct {
	MaxBodyBytes  int64         `mapstructure:"max_body_bytes"`
	ShutdownGrace time.Duration `mapstructure:"shutdown_grace"`
	// MaxAnswerBytes caps how much of a streamed answer is kept for accounting (token estimates,
	// session records); the stream itself is never cut.
	MaxAnswerBytes int `mapstructure:"max_answer_bytes"`
	// StreamKeepAlive is the upstream silence after which a stream gets an SSE comment (": keep-alive"),
	// repeated while the silence lasts, so proxies and client read timeouts do not cut a model that is
	// thinking (default 15s; 0 turns it off).
	StreamKeepAlive time.Duration `mapstructure:"stream_keepalive"`
	// DebugListen serves net/http/pprof (/debug/pprof/) on a second, loopback-only address, for profiling
	// a running relay; empty (the default) serves nothing.
	DebugListen string `mapstructure:"debug_listen"`
	// GCHeadroomBytes is how much garbage the heap may gather before a GC cycle while the live heap is
	// small (StartGCHeadroom, memory.go): fewer cycles, a shorter latency tail, that much more memory
	// under load. 0 leaves the Go default; a GOGC environment variable overrides it.
	GCHeadroomBytes int64 `mapstructure:"gc_headroom_bytes"`
}

// AuthConfig tunes relay-key checks.
type AuthConfig struct {
	// KeyCacheTTL is how long a looked-up key is trusted without asking the store again; a key revoked
	// from another process stops working within this time.
	KeyCacheTTL time.Duration `mapstructure:"key_cache_ttl"`
	JWT         JWTConfig     `mapstructure:",squash"` // auth.jwt_secret, auth.token_ttl (jwt.go)
}

// StoreConfig selects and tunes the store.
type StoreConfig struct {
	Path          string        `mapstructure:"path"`
	QueueSize     int           `mapstructure:"queue_size"`
	BatchSize     int           `mapstructure:"batch_size"`
	FlushInterval time.Duration `mapstructure:"flush_interval"`
	WriterNice    int           `mapstructure:"writer_nice"` // 0..19, Linux only (sqlite.Options.WriterNice)
}

// ChannelConfig is one upstream as written in config.yaml.
type ChannelConfig struct {
	Name string `mapstructure:"name"`
	Kind string `mapstructure:"kind"`
	// Enabled is true, false, or auto: enabled when every ${ENV} reference in the channel is set.
	Enabled     string            `mapstructure:"enabled"`
	BaseURL     string            `mapstructure:"base_url"`
	Keys        []string          `mapstructure:"keys"`
	Credentials map[string]string `mapstructure:"credentials"`
	Models      []string          `mapstructure:"models"`
	ModelMap    map[string]string `mapstructure:"model_map"`
	Timeout     time.Duration     `mapstructure:"timeout"`
	// IdleTimeout bounds a stream's wait for its first event and each gap between events (default 2m;
	// negative: none). Timeout bounds the whole call (default: none).
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// BreakerThreshold consecutive failures open the channel's circuit for BreakerCooldown (defaults 5
	// and 30s); it is then probed one request at a time.
	BreakerThreshold int           `mapstructure:"breaker_threshold"`
	BreakerCooldown  time.Duration `mapstructure:"breaker_cooldown"`
	// MaxConcurrency bounds the channel's concurrent upstream calls (0: unbounded); a full channel is
	// skipped for the next candidate, or answered 503 when none is left.
	MaxConcurrency int `mapstructure:"max_concurrency"`
	// ConnectTimeout bounds connecting to the upstream (default 10s).
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	Priority       int           `mapstructure:"priority"`
	Weight         int           `mapstructure:"weight"`
}

// DefaultIdleTimeout is a channel's idle_timeout when config.yaml gives none.
const DefaultIdleTimeout = 2 * time.Minute

func setDefaults(v *viper.Viper) {
	v.SetDefault("listen", "127.0.0.1:8080")
	v.SetDefault("log.format", "text")
	v.SetDefault("log.level", "info")
	v.SetDefault("log.access_log", false)
	v.SetDefault("server.max_body_bytes", 10<<20)
	v.SetDefault("server.shutdown_grace", "30s")
	v.SetDefault("server.max_answer_bytes", 1<<20)
	v.SetDefault("server.stream_keepalive", "15s")
	v.SetDefault("server.debug_listen", "") // known to viper, so RELAY_SERVER_DEBUG_LISTEN applies
	v.SetDefault("server.gc_headroom_bytes", 32<<20)
	v.SetDefault("auth.key_cache_ttl", "10s")
	v.SetDefault("store.path", "./data/relay.db")
	v.SetDefault("store.queue_size", 10000)
	v.SetDefault("store.batch_size", 512)
	v.SetDefault("store.flush_interval", "10ms")
	v.SetDefault("store.writer_nice", 19)
	v.SetDefault("workflows.concurrency", 8)
	v.SetDefault("workflows.job_timeout", "10m")
	v.SetDefault("callbacks.secret", "") // known to viper, so RELAY_CALLBACKS_SECRET sets it
	v.SetDefault("callbacks.allow_private", false)
	v.SetDefault("callbacks.concurrency", 16)
	v.SetDefault("callbacks.timeout", "10s")
	v.SetDefault("callbacks.max_attempts", 10)
	v.SetDefault("callbacks.max_age", "24h")
	v.SetDefault("callbacks.initial_backoff", "1s")
	v.SetDefault("callbacks.max_backoff", "10m")
}

// LoadConfig reads path (YAML), applies RELAY_* overrides and validates the result. An empty path reads
// only defaults and the environment.
func LoadConfig(path string) (*Config, error) {
	v := viper.New()
	setDefaults(v)
	v.SetEnvPrefix("RELAY")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	var c Config
	if err := v.Unmarshal(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if path != "" {
		if err := keepModelMapCase(path, &c); err != nil {
			return nil, err
		}
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) validate() error {
	if c.Listen == "" {
		return errors.New("config: listen must not be empty")
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("config: log.format must be text or json, not %q", c.Log.Format)
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		return err
	}
	if c.Server.MaxBodyBytes <= 0 {
		return errors.New("config: server.max_body_bytes must be positive")
	}
	if c.Server.GCHeadroomBytes < 0 {
		return errors.New("config: server.gc_headroom_bytes must not be negative (0 leaves the Go default)")
	}
	if c.Store.Path == "" {
		return errors.New("config: store.path must not be empty")
	}
	if c.Store.WriterNice < 0 || c.Store.WriterNice > 19 {
		return errors.New("config: store.writer_nice must be within 0..19 (0: the writer runs at normal priority)")
	}
	if err := checkLoopback(c.Server.DebugListen); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, ch := range c.Channels {
		where := fmt.Sprintf("config: channels[%d]", i)
		if ch.Name == "" {
			return fmt.Errorf("%s.name is required", where)
		}
		where = fmt.Sprintf("config: channels[%d] (%s)", i, ch.Name)
		if names[ch.Name] {
			return fmt.Errorf("%s.name is used twice", where)
		}
		names[ch.Name] = true
		if ch.Kind == "" {
			return fmt.Errorf("%s.kind is required", where)
		}
		enabled, ok := normEnabled(ch.Enabled)
		if !ok {
			return fmt.Errorf("%s.enabled must be true, false or auto, not %q", where, ch.Enabled)
		}
		c.Channels[i].Enabled = enabled
		if len(ch.Models) == 0 {
			return fmt.Errorf("%s.models must list at least one model", where)
		}
		if ch.MaxConcurrency < 0 || ch.ConnectTimeout < 0 {
			return fmt.Errorf("%s.max_concurrency and connect_timeout must not be negative", where)
		}
		if ch.Weight < 0 {
			return fmt.Errorf("%s.weight must not be negative", where)
		}
	}
	if err := c.Sessions.validate(); err != nil {
		return err
	}
	if err := c.validateWorkflows(); err != nil {
		return err
	}
	return c.validateStrategies()
}

func (c *Config) validateWorkflows() error {
	w, cb := &c.Workflows, &c.Callbacks
	if w.Concurrency <= 0 {
		return errors.New("config: workflows.concurrency must be positive")
	}
	if w.JobTimeout <= 0 {
		return errors.New("config: workflows.job_timeout must be positive")
	}
	kinds := map[string]string{}
	for _, ch := range c.Channels {
		kinds[ch.Name] = ch.Kind
	}
	ids := map[string]bool{}
	for i, wf := range w.Apps {
		where := fmt.Sprintf("config: workflows.apps[%d]", i)
		if wf.WorkID == "" {
			return fmt.Errorf("%s.work_id is required", where)
		}
		where = fmt.Sprintf("config: workflows.apps[%d] (%s)", i, wf.WorkID)
		if ids[wf.WorkID] {
			return fmt.Errorf("%s.work_id is used twice", where)
		}
		ids[wf.WorkID] = true
		if wf.EventType == "" {
			w.Apps[i].EventType = DefaultEventType
		}
		kind, ok := kinds[wf.Channel]
		if !ok {
			return fmt.Errorf("%s.channel %q names no configured channel", where, wf.Channel)
		}
		if kind != w.Apps[i].EventType {
			return fmt.Errorf("%s: event_type %q needs a channel of that kind, but %s is of kind %q", where, w.Apps[i].EventType, wf.Channel, kind)
		}
	}
	switch {
	case cb.Concurrency <= 0:
		return errors.New("config: callbacks.concurrency must be positive")
	case cb.Timeout <= 0:
		return errors.New("config: callbacks.timeout must be positive")
	case cb.MaxAttempts <= 0:
		return errors.New("config: callbacks.max_attempts must be positive")
	case cb.MaxAge <= 0:
		return errors.New("config: callbacks.max_age must be positive")
	case cb.InitialBackoff <= 0 || cb.MaxBackoff < cb.InitialBackoff:
		return errors.New("config: callbacks.initial_backoff must be positive and at most callbacks.max_backoff")
	}
	return nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand replaces ${NAME} references with the environment's values and reports the names that are unset.
func expand(s string, missing *[]string) string {
	return envRef.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			*missing = append(*missing, name)
		}
		return v
	})
}

// BuildChannels resolves the enabled channels: secrets expanded from the environment, kinds checked
// against the known adaptors, kind-specific settings validated. Disabled channels are left out.
func (c *Config) BuildChannels(kinds map[string]adaptor.Adaptor) ([]*Channel, error) {
	var out []*Channel
	for i, cc := range c.Channels {
		where := fmt.Sprintf("config: channels[%d] (%s)", i, cc.Name)
		a, ok := kinds[cc.Kind]
		if !ok {
			return nil, fmt.Errorf("%s.kind: unknown kind %q", where, cc.Kind)
		}
		var missing []string
		ch := &adaptor.Channel{Name: cc.Name, Kind: cc.Kind, Models: cc.Models, ModelMap: cc.ModelMap, Timeout: cc.Timeout}
		if cc.ConnectTimeout > 0 {
			ch.HTTP = &http.Client{Transport: adaptor.NewTransport(cc.ConnectTimeout)}
		}
		ch.BaseURL = expand(cc.BaseURL, &missing)
		for j, k := range cc.Keys {
			before := len(missing)
			k = expand(k, &missing)
			if len(missing) == before && k == "" {
				return nil, fmt.Errorf("%s.keys[%d] is empty", where, j)
			}
			ch.Keys = append(ch.Keys, k)
		}
		ch.Credentials = map[string]string{}
		for name, v := range cc.Credentials {
			ch.Credentials[name] = expand(v, &missing)
		}
		enabled, ok := normEnabled(cc.Enabled)
		if !ok {
			return nil, fmt.Errorf("%s.enabled must be true, false or auto, not %q", where, cc.Enabled)
		}
		if enabled == "false" || (enabled == "auto" && len(missing) > 0) {
			continue
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("%s: environment variable %s is not set (referenced as ${%s})", where, missing[0], missing[0])
		}
		if v, ok := a.(adaptor.Validator); ok {
			if err := v.Validate(ch); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		}
		weight := cc.Weight
		if weight == 0 {
			weight = 1
		}
		idle := cc.IdleTimeout
		if idle == 0 {
			idle = DefaultIdleTimeout
		}
		out = append(out, &Channel{Channel: ch, Adaptor: a, Priority: cc.Priority, Weight: weight, IdleTimeout: idle,
			breaker: newBreaker(cc.BreakerThreshold, cc.BreakerCooldown), slots: slots(cc.MaxConcurrency)})
	}
	return out, nil
}

// DefaultConfig is the built-in configuration: defaults and the demo upstream, used when no config file
// exists.
func DefaultConfig() (*Config, error) {
	c, err := LoadConfig("")
	if err != nil {
		return nil, err
	}
	if len(c.Channels) == 0 {
		c.Channels = []ChannelConfig{{Name: "demo", Kind: "demo", Enabled: "true", Models: []string{"demo"}}}
	}
	return c, nil
}

// normEnabled reads a channel's enabled setting: true, false or auto. YAML booleans reach us through
// viper's weak decoding as "1"/"0".
func normEnabled(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "1", "true", "yes", "on", "":
		return "true", true
	case "0", "false", "no", "off":
		return "false", true
	case "auto":
		return "auto", true
	}
	return "", false
}

// keepModelMapCase re-reads channels[].model_map from the YAML file: viper lowercases map keys, and model
// names are case-sensitive (Qwen/Qwen2.5-72B-Instruct).
func keepModelMapCase(path string, c *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	var raw struct {
		Channels []struct {
			ModelMap map[string]string `yaml:"model_map"`
		} `yaml:"channels"`
	}
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	for i := range c.Channels {
		if i < len(raw.Channels) && raw.Channels[i].ModelMap != nil {
			c.Channels[i].ModelMap = raw.Channels[i].ModelMap
		}
	}
	return nil
}

func slots(n int) chan struct{} {
	if n <= 0 {
		return nil
	}
	return make(chan struct{}, n)
}

// checkLoopback refuses a debug address that is not on loopback: profiles show memory contents (upstream
// keys among them) and must not be reachable from the network.
func checkLoopback(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("config: server.debug_listen %q: %v", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("config: server.debug_listen must be a loopback address (127.0.0.1:port, [::1]:port or localhost:port), not %q", addr)
	}
	return nil
}
