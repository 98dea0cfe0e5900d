package relay_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"relay/adaptor"
	"relay/adaptor/demo"
	"relay/adaptor/kinds"
	"relay/adaptor/openai"
	"relay/relay"
)

// cfgKinds are the adaptors these tests build channels with (not relay/adaptor/kinds: only demo and
// openai are needed, and openai is the kind with a Validator).
func cfgKinds() map[string]adaptor.Adaptor { return kinds.All() }

// repoSecrets are the variables the repo's config.yaml references; tests unset them so "auto" channels
// stay off whatever the host has set.
var repoSecrets = []string{"OPENAI_API_KEY", "TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "SPARK_APP_ID", "SPARK_API_KEY",
	"SPARK_API_SECRET", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "FASTGPT_BASE_URL"}

// cfgCleanEnv removes every RELAY_* variable (restored at cleanup) and the named variables, so the host's
// environment cannot change what a test reads.
func cfgCleanEnv(t *testing.T, unset ...string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "RELAY_") {
			unset = append(unset, k)
		}
	}
	for _, k := range unset {
		t.Setenv(k, "") // registers the restore
		os.Unsetenv(k)
	}
}

// cfgWrite writes a YAML config into a fresh temp dir and returns its path.
func cfgWrite(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// cfgLoad loads yaml and fails on error.
func cfgLoad(t *testing.T, yaml string) *relay.Config {
	t.Helper()
	c, err := relay.LoadConfig(cfgWrite(t, yaml))
	if err != nil {
		t.Fatalf("LoadConfig: %v\n%s", err, yaml)
	}
	return c
}

// cfgBuild loads yaml and builds its channels, failing on any error.
func cfgBuild(t *testing.T, yaml string) []*relay.Channel {
	t.Helper()
	chans, err := cfgLoad(t, yaml).BuildChannels(cfgKinds())
	if err != nil {
		t.Fatalf("BuildChannels: %v\n%s", err, yaml)
	}
	return chans
}

// cfgErr loads yaml and builds its channels, returning the first error (nil when both succeed).
func cfgErr(t *testing.T, yaml string) error {
	t.Helper()
	c, err := relay.LoadConfig(cfgWrite(t, yaml))
	if err != nil {
		return err
	}
	_, err = c.BuildChannels(cfgKinds())
	return err
}

func cfgNames(chans []*relay.Channel) []string {
	out := []string{}
	for _, ch := range chans {
		out = append(out, ch.Name)
	}
	return out
}

const repoConfig = "../config.yaml"

func TestConfigRepoFileLoads(t *testing.T) {
	cfgCleanEnv(t, repoSecrets...)
	c, err := relay.LoadConfig(repoConfig)
	if err != nil {
		t.Fatalf("LoadConfig(%s): %v", repoConfig, err)
	}
	if c.Listen != "127.0.0.1:8080" || c.Log.Format != "text" || c.Log.Level != "info" || c.Log.AccessLog {
		t.Errorf("listen/log = %q %+v", c.Listen, c.Log)
	}
	if c.Server.MaxBodyBytes != 10485760 || c.Server.ShutdownGrace != 30*time.Second || c.Server.MaxAnswerBytes != 1048576 {
		t.Errorf("server = %+v", c.Server)
	}
	if c.Auth.KeyCacheTTL != 10*time.Second {
		t.Errorf("auth.key_cache_ttl = %v", c.Auth.KeyCacheTTL)
	}
	if want := (relay.StoreConfig{Path: "./data/relay.db", QueueSize: 10000, BatchSize: 512, FlushInterval: 10 * time.Millisecond, WriterNice: 19}); c.Store != want {
		t.Errorf("store = %+v, want %+v", c.Store, want)
	}
	if len(c.Channels) != 7 {
		t.Fatalf("channels = %+v, want demo, openai, hunyuan, spark, anthropic, gemini, ollama", c.Channels)
	}
	d, o := c.Channels[0], c.Channels[1]
	// YAML true arrives as "1" and is normalised.
	if d.Name != "demo" || d.Kind != "demo" || d.Enabled != "true" || !reflect.DeepEqual(d.Models, []string{"demo"}) {
		t.Errorf("demo channel = %+v", d)
	}
	if o.Name != "openai" || o.Kind != "openai" || o.Enabled != "auto" || o.BaseURL != "https://api.openai.com/v1" ||
		!reflect.DeepEqual(o.Keys, []string{"${OPENAI_API_KEY}"}) || !reflect.DeepEqual(o.Models, []string{"gpt-4o-mini", "gpt-4o"}) ||
		o.Timeout != 5*time.Minute {
		t.Errorf("openai channel = %+v", o)
	}

	// OPENAI_API_KEY unset: auto leaves the openai channel out.
	chans, err := c.BuildChannels(cfgKinds())
	if err != nil {
		t.Fatalf("BuildChannels: %v", err)
	}
	if got := cfgNames(chans); !reflect.DeepEqual(got, []string{"demo"}) {
		t.Fatalf("channels without OPENAI_API_KEY = %v, want [demo]", got)
	}
	if _, ok := chans[0].Adaptor.(*demo.Adaptor); !ok || chans[0].Weight != 1 || chans[0].Priority != 0 {
		t.Fatalf("demo channel built as %+v", chans[0])
	}
}

func TestConfigRepoFileWithOpenAIKey(t *testing.T) {
	cfgCleanEnv(t, repoSecrets...)
	t.Setenv("OPENAI_API_KEY", "sk-test-from-env")
	c, err := relay.LoadConfig(repoConfig)
	if err != nil {
		t.Fatal(err)
	}
	chans, err := c.BuildChannels(cfgKinds())
	if err != nil {
		t.Fatal(err)
	}
	if got := cfgNames(chans); !reflect.DeepEqual(got, []string{"demo", "openai"}) {
		t.Fatalf("channels = %v, want [demo openai]", got)
	}
	o := chans[1]
	if _, ok := o.Adaptor.(*openai.Adaptor); !ok {
		t.Fatalf("openai channel adaptor = %T", o.Adaptor)
	}
	if o.Kind != "openai" || o.BaseURL != "https://api.openai.com/v1" || !reflect.DeepEqual(o.Keys, []string{"sk-test-from-env"}) ||
		!reflect.DeepEqual(o.Models, []string{"gpt-4o-mini", "gpt-4o"}) || o.Timeout != 5*time.Minute || o.Weight != 1 {
		t.Fatalf("openai channel = %+v", o.Channel)
	}
	if k := o.NextKey(); k != "sk-test-from-env" {
		t.Fatalf("NextKey = %q", k)
	}
}

func TestConfigEnvOverridesFile(t *testing.T) {
	cfgCleanEnv(t, repoSecrets...)
	t.Setenv("RELAY_LISTEN", "0.0.0.0:9999")
	t.Setenv("RELAY_STORE_PATH", "/var/lib/relay/x.db")
	t.Setenv("RELAY_LOG_FORMAT", "json")
	t.Setenv("RELAY_STORE_BATCH_SIZE", "64")
	t.Setenv("RELAY_SERVER_SHUTDOWN_GRACE", "7s")
	c, err := relay.LoadConfig(repoConfig)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:9999" {
		t.Errorf("listen = %q, want RELAY_LISTEN's value", c.Listen)
	}
	if c.Store.Path != "/var/lib/relay/x.db" {
		t.Errorf("store.path = %q, want RELAY_STORE_PATH's value", c.Store.Path)
	}
	if c.Log.Format != "json" || c.Store.BatchSize != 64 || c.Server.ShutdownGrace != 7*time.Second {
		t.Errorf("log.format = %q, store.batch_size = %d, server.shutdown_grace = %v", c.Log.Format, c.Store.BatchSize, c.Server.ShutdownGrace)
	}
	// Keys the environment does not name keep the file's values.
	if c.Store.QueueSize != 10000 || c.Log.Level != "info" || len(c.Channels) != 7 {
		t.Errorf("untouched keys changed: %+v", c)
	}

	// Without a file, the environment still applies over the defaults.
	c, err = relay.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:9999" || c.Store.Path != "/var/lib/relay/x.db" {
		t.Errorf("no file: listen %q, store.path %q", c.Listen, c.Store.Path)
	}
}

func TestConfigEnvOverrideIsValidated(t *testing.T) {
	cfgCleanEnv(t)
	t.Setenv("RELAY_LOG_FORMAT", "xml")
	_, err := relay.LoadConfig(repoConfig)
	if err == nil || !strings.Contains(err.Error(), `log.format must be text or json, not "xml"`) {
		t.Fatalf("err = %v, want it to name log.format", err)
	}
}

func TestBuildChannelsExpandsEnv(t *testing.T) {
	cfgCleanEnv(t)
	t.Setenv("CFGT_HOST", "http://upstream.test:8443")
	t.Setenv("CFGT_KEY1", "sk-one")
	t.Setenv("CFGT_KEY2", "two")
	t.Setenv("CFGT_SID", "sid-123")
	t.Setenv("CFGT_SKEY", "skey-456")
	chans := cfgBuild(t, `
channels:
  - name: up
    kind: openai
    base_url: ${CFGT_HOST}/v1
    keys: ["${CFGT_KEY1}", "prefix-${CFGT_KEY2}-${CFGT_KEY2}", "literal"]
    credentials:
      secret_id: ${CFGT_SID}
      secret_key: "${CFGT_SID}:${CFGT_SKEY}"
      region: ap-guangzhou
    models: [m1, m2]
    model_map: {m1: upstream-m1}
    priority: 5
    weight: 3
    timeout: 90s
`)
	if len(chans) != 1 {
		t.Fatalf("channels = %v", cfgNames(chans))
	}
	ch := chans[0]
	if ch.BaseURL != "http://upstream.test:8443/v1" {
		t.Errorf("base_url = %q", ch.BaseURL)
	}
	if want := []string{"sk-one", "prefix-two-two", "literal"}; !reflect.DeepEqual(ch.Keys, want) {
		t.Errorf("keys = %q, want %q", ch.Keys, want)
	}
	if want := map[string]string{"secret_id": "sid-123", "secret_key": "sid-123:skey-456", "region": "ap-guangzhou"}; !reflect.DeepEqual(ch.Credentials, want) {
		t.Errorf("credentials = %q, want %q", ch.Credentials, want)
	}
	if ch.Priority != 5 || ch.Weight != 3 || ch.Timeout != 90*time.Second || ch.UpstreamModel("m1") != "upstream-m1" || ch.UpstreamModel("m2") != "m2" {
		t.Errorf("channel = %+v", ch)
	}
}

func TestBuildChannelsEnabledTrueMissingEnvFails(t *testing.T) {
	for _, enabled := range []string{"enabled: true", "enabled: \"true\"", ""} { // absent means true
		t.Run(enabled, func(t *testing.T) {
			cfgCleanEnv(t, "CFGT_UNSET_KEY")
			err := cfgErr(t, `
channels:
  - name: demo
    kind: demo
    models: [demo]
  - name: needs-key
    kind: openai
    `+enabled+`
    base_url: http://upstream.test/v1
    keys: ["${CFGT_UNSET_KEY}"]
    models: [m]
`)
			if err == nil {
				t.Fatal("BuildChannels succeeded with an unset ${CFGT_UNSET_KEY} in an enabled channel")
			}
			for _, want := range []string{"CFGT_UNSET_KEY", "channels[1] (needs-key)"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}

	// Set but empty counts as unset; a reference in base_url or credentials counts too.
	for _, field := range []string{"base_url: ${CFGT_EMPTY}/v1\n    keys: [k]", "base_url: http://h\n    credentials: {secret_id: \"${CFGT_EMPTY}\"}"} {
		t.Run("empty "+strings.Fields(field)[0], func(t *testing.T) {
			cfgCleanEnv(t)
			t.Setenv("CFGT_EMPTY", "")
			err := cfgErr(t, `
channels:
  - name: c
    kind: openai
    enabled: true
    `+field+`
    models: [m]
`)
			if err == nil || !strings.Contains(err.Error(), "CFGT_EMPTY") || !strings.Contains(err.Error(), "(c)") {
				t.Fatalf("err = %v, want it to name CFGT_EMPTY and channel c", err)
			}
		})
	}
}

func TestBuildChannelsEnabledValues(t *testing.T) {
	cases := []struct {
		enabled    string // YAML value, "" to omit the key
		setEnv     bool
		normalised string
		built      bool
	}{
		{"true", true, "true", true},
		{"false", true, "false", false},
		{"false", false, "false", false}, // disabled: a missing ${ENV} does not matter
		{"auto", true, "auto", true},
		{"auto", false, "auto", false},
		{"\"auto\"", false, "auto", false},
		{"AUTO", true, "auto", true},
		{"yes", true, "true", true},
		{"off", false, "false", false},
		{"1", true, "true", true},
		{"0", false, "false", false},
		{"", true, "true", true},
	}
	for _, tc := range cases {
		name := tc.enabled
		if tc.setEnv {
			name += " with env"
		}
		t.Run(name, func(t *testing.T) {
			cfgCleanEnv(t, "CFGT_KEY")
			if tc.setEnv {
				t.Setenv("CFGT_KEY", "k")
			}
			line := ""
			if tc.enabled != "" {
				line = "enabled: " + tc.enabled
			}
			c := cfgLoad(t, `
channels:
  - name: c
    kind: openai
    `+line+`
    base_url: http://upstream.test/v1
    keys: ["${CFGT_KEY}"]
    models: [m]
`)
			if got := c.Channels[0].Enabled; got != tc.normalised {
				t.Errorf("Enabled after load = %q, want %q", got, tc.normalised)
			}
			chans, err := c.BuildChannels(cfgKinds())
			if err != nil {
				t.Fatalf("BuildChannels: %v", err)
			}
			if built := len(chans) == 1; built != tc.built {
				t.Fatalf("channel built = %v, want %v", built, tc.built)
			}
		})
	}
}

// Each configuration mistake fails at start with a message naming the key (and the channel).
func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown kind", `
channels:
  - name: demo
    kind: demo
    models: [demo]
  - name: weird
    kind: nope
    models: [m]
`, []string{"channels[1] (weird).kind", `unknown kind "nope"`}},
		{"duplicate name", `
channels:
  - {name: dup, kind: demo, models: [a]}
  - {name: dup, kind: demo, models: [b]}
`, []string{"channels[1] (dup).name is used twice"}},
		{"missing models", `
channels:
  - {name: nomodels, kind: demo}
`, []string{"channels[0] (nomodels).models must list at least one model"}},
		{"empty models", `
channels:
  - {name: nomodels, kind: demo, models: []}
`, []string{"channels[0] (nomodels).models"}},
		{"bad log.format", `
log: {format: xml}
`, []string{`log.format must be text or json, not "xml"`}},
		{"bad log.level", `
log: {level: loud}
`, []string{`log.level must be debug, info, warn or error, not "loud"`}},
		{"bad enabled", `
channels:
  - {name: c, kind: demo, enabled: maybe, models: [demo]}
`, []string{`channels[0] (c).enabled must be true, false or auto, not "maybe"`}},
		{"missing name", `
channels:
  - {kind: demo, models: [demo]}
`, []string{"channels[0].name is required"}},
		{"missing kind", `
channels:
  - {name: c, models: [demo]}
`, []string{"channels[0] (c).kind is required"}},
		{"negative weight", `
channels:
  - {name: c, kind: demo, models: [demo], weight: -1}
`, []string{"channels[0] (c).weight must not be negative"}},
		{"empty listen", `
listen: ""
`, []string{"listen must not be empty"}},
		{"zero max_body_bytes", `
server: {max_body_bytes: 0}
`, []string{"server.max_body_bytes must be positive"}},
		{"empty store.path", `
store: {path: ""}
`, []string{"store.path must not be empty"}},
		{"empty literal key", `
channels:
  - {name: c, kind: openai, base_url: "http://h", keys: ["k", ""], models: [m]}
`, []string{"channels[0] (c).keys[1] is empty"}},
		{"openai without base_url", `
channels:
  - {name: nobase, kind: openai, keys: [k], models: [m]}
`, []string{"channels[0] (nobase)", "base_url is required for kind openai"}},
		{"not yaml", "channels: [ {name: c\n", []string{"config "}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfgCleanEnv(t)
			err := cfgErr(t, tc.yaml)
			if err == nil {
				t.Fatalf("no error for\n%s", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "config") {
				t.Errorf("error %q does not start with \"config\"", err)
			}
		})
	}
}

func TestConfigMissingFile(t *testing.T) {
	cfgCleanEnv(t)
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := relay.LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want it to name %s", err, path)
	}
}

// Errors name variables and channels, never the secrets the variables hold.
func TestConfigErrorsDoNotLeakSecrets(t *testing.T) {
	const secret = "sk-live-SECRET-4f9a1c0e7d"
	cases := map[string]string{
		"openai without base_url": `
channels:
  - name: leaky
    kind: openai
    keys: ["${CFGT_SECRET}"]
    credentials: {api_key: "${CFGT_SECRET}"}
    models: [m]
`,
		"another variable unset": `
channels:
  - name: leaky
    kind: openai
    enabled: true
    base_url: http://h/v1
    keys: ["${CFGT_SECRET}", "${CFGT_NOT_SET}"]
    models: [m]
`,
		"empty key after a secret": `
channels:
  - name: leaky
    kind: openai
    base_url: http://h/v1
    keys: ["${CFGT_SECRET}", ""]
    models: [m]
`,
		"secret in base_url, bad weight": `
channels:
  - name: leaky
    kind: openai
    base_url: https://${CFGT_SECRET}@h/v1
    keys: ["${CFGT_SECRET}"]
    models: [m]
    weight: -2
`,
		"unknown kind": `
channels:
  - name: leaky
    kind: openai2
    keys: ["${CFGT_SECRET}"]
    models: [m]
`,
	}
	for name, yaml := range cases {
		t.Run(name, func(t *testing.T) {
			cfgCleanEnv(t, "CFGT_NOT_SET")
			t.Setenv("CFGT_SECRET", secret)
			err := cfgErr(t, yaml)
			if err == nil {
				t.Fatalf("no error for\n%s", yaml)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "SECRET-4f9a") {
				t.Fatalf("error leaks the secret: %q", err)
			}
			if !strings.Contains(err.Error(), "leaky") {
				t.Errorf("error %q does not name the channel", err)
			}
		})
	}
}

func TestConfigDefault(t *testing.T) {
	cfgCleanEnv(t)
	c, err := relay.DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.Store.Path != "./data/relay.db" || c.Log.Format != "text" || c.Log.Level != "info" ||
		c.Server.MaxBodyBytes != 10<<20 || c.Server.ShutdownGrace != 30*time.Second || c.Auth.KeyCacheTTL != 10*time.Second ||
		c.Store.QueueSize != 10000 || c.Store.BatchSize != 512 || c.Store.FlushInterval != 10*time.Millisecond ||
		c.Store.WriterNice != 19 || c.Server.GCHeadroomBytes != 32<<20 {
		t.Errorf("defaults = %+v", c)
	}
	if len(c.Channels) != 1 {
		t.Fatalf("default channels = %+v, want one demo channel", c.Channels)
	}
	if d := c.Channels[0]; d.Name != "demo" || d.Kind != "demo" || d.Enabled != "true" || !reflect.DeepEqual(d.Models, []string{"demo"}) {
		t.Fatalf("default channel = %+v", d)
	}
	chans, err := c.BuildChannels(cfgKinds())
	if err != nil {
		t.Fatal(err)
	}
	if len(chans) != 1 || chans[0].Name != "demo" || chans[0].Weight != 1 {
		t.Fatalf("built default channels = %v", cfgNames(chans))
	}
	if _, ok := chans[0].Adaptor.(*demo.Adaptor); !ok {
		t.Fatalf("default channel adaptor = %T", chans[0].Adaptor)
	}

	// The environment applies to the default configuration too.
	t.Setenv("RELAY_LISTEN", "127.0.0.1:7000")
	c, err = relay.DefaultConfig()
	if err != nil || c.Listen != "127.0.0.1:7000" {
		t.Fatalf("DefaultConfig with RELAY_LISTEN: %v, listen %q", err, c.Listen)
	}
}

// model_map keys are model names as clients send them, and model names are case-sensitive
// (Qwen/Qwen2.5-72B-Instruct, deepseek-ai/DeepSeek-V3): config loading must keep their case.
func TestConfigModelMapKeepsCase(t *testing.T) {
	cfgCleanEnv(t)
	chans := cfgBuild(t, `
channels:
  - name: sf
    kind: openai
    base_url: http://h/v1
    keys: [k]
    models: [Qwen/Qwen2.5-72B-Instruct]
    model_map: {Qwen/Qwen2.5-72B-Instruct: Pro/Qwen/Qwen2.5-72B-Instruct}
`)
	ch := chans[0]
	if got := ch.UpstreamModel("Qwen/Qwen2.5-72B-Instruct"); got != "Pro/Qwen/Qwen2.5-72B-Instruct" {
		t.Fatalf("model_map key case is lost: UpstreamModel(%q) = %q, ModelMap = %q", "Qwen/Qwen2.5-72B-Instruct", got, ch.ModelMap)
	}
}

// BuildChannels must honour every spelling validate accepts for "disabled", also when the Config was
// built in code (as the relay tests do) rather than loaded through LoadConfig's validate.
func TestBuildChannelsDisabledWithoutLoadConfig(t *testing.T) {
	cfgCleanEnv(t)
	for _, enabled := range []string{"false", "0", "off", "no"} {
		c := &relay.Config{Channels: []relay.ChannelConfig{{Name: "c", Kind: "demo", Enabled: enabled, Models: []string{"demo"}}}}
		chans, err := c.BuildChannels(cfgKinds())
		if err != nil {
			t.Fatalf("enabled %q: %v", enabled, err)
		}
		if len(chans) != 0 {
			t.Fatalf("BuildChannels built a channel with enabled %q", enabled)
		}
	}
}

// server.debug_listen (pprof) is refused anywhere but loopback: profiles show memory, keys among it.
func TestConfigDebugListenLoopbackOnly(t *testing.T) {
	cfgCleanEnv(t)
	for addr, ok := range map[string]bool{"": true, "127.0.0.1:6060": true, "[::1]:6060": true, "localhost:6060": true,
		"0.0.0.0:6060": false, ":6060": false, "10.0.0.5:6060": false, "example.com:6060": false, "127.0.0.1": false} {
		t.Setenv("RELAY_SERVER_DEBUG_LISTEN", addr)
		cfg, err := relay.LoadConfig(repoConfig)
		if ok && (err != nil || cfg.Server.DebugListen != addr) {
			t.Errorf("debug_listen %q: %v", addr, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "server.debug_listen")) {
			t.Errorf("debug_listen %q: err = %v, want a server.debug_listen error", addr, err)
		}
	}
}

// The example config and the built-in default agree on 32 MiB of GC headroom; the environment can set it
// (0 turns it off) but not make it negative.
func TestConfigWriterNice(t *testing.T) {
	cfgCleanEnv(t)
	t.Setenv("RELAY_STORE_WRITER_NICE", "0")
	if cfg, err := relay.LoadConfig(repoConfig); err != nil || cfg.Store.WriterNice != 0 {
		t.Errorf("RELAY_STORE_WRITER_NICE=0: %v", err)
	}
	for _, bad := range []string{"-1", "20"} {
		t.Setenv("RELAY_STORE_WRITER_NICE", bad)
		if _, err := relay.LoadConfig(repoConfig); err == nil || !strings.Contains(err.Error(), "store.writer_nice") {
			t.Errorf("writer_nice %s: err = %v", bad, err)
		}
	}
}

func TestConfigGCHeadroom(t *testing.T) {
	cfgCleanEnv(t)
	cfg, err := relay.LoadConfig(repoConfig)
	if err != nil || cfg.Server.GCHeadroomBytes != 32<<20 {
		t.Fatalf("example config: %v, headroom %d", err, cfg.Server.GCHeadroomBytes)
	}
	t.Setenv("RELAY_SERVER_GC_HEADROOM_BYTES", "0")
	if cfg, err := relay.LoadConfig(repoConfig); err != nil || cfg.Server.GCHeadroomBytes != 0 {
		t.Errorf("RELAY_SERVER_GC_HEADROOM_BYTES=0: %v", err)
	}
	t.Setenv("RELAY_SERVER_GC_HEADROOM_BYTES", "-1")
	if _, err := relay.LoadConfig(repoConfig); err == nil || !strings.Contains(err.Error(), "server.gc_headroom_bytes") {
		t.Errorf("a negative headroom: err = %v", err)
	}
}
