package relay_test

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"relay/relay"
)

const wfChannels = `
channels:
  - {name: demo, kind: demo, models: [demo]}
  - {name: fg, kind: fastgpt, enabled: auto, base_url: "${FG_TEST_BASE}", models: [fastgpt-app]}
`

func TestWorkflowConfigDefaultsAndParse(t *testing.T) {
	cfgCleanEnv(t)
	c := cfgLoad(t, wfChannels)
	if c.Workflows.Concurrency != 8 || c.Workflows.JobTimeout != 10*time.Minute || len(c.Workflows.Apps) != 0 {
		t.Fatalf("workflow defaults %+v", c.Workflows)
	}
	want := relay.CallbacksConfig{Concurrency: 16, Timeout: 10 * time.Second, MaxAttempts: 10, MaxAge: 24 * time.Hour,
		InitialBackoff: time.Second, MaxBackoff: 10 * time.Minute}
	if !reflect.DeepEqual(c.Callbacks, want) {
		t.Fatalf("callback defaults %+v", c.Callbacks)
	}

	c = cfgLoad(t, wfChannels+`
workflows:
  concurrency: 3
  job_timeout: 90s
  apps:
    - work_id: Refund-Bot
      channel: fg
      app_key: ${FG_REFUND_KEY}
      allowed_keys: [crm, billing]
    - {work_id: other, event_type: fastgpt, channel: fg}
callbacks:
  secret: ${CB_SECRET}
  allow_private: true
  max_attempts: 4
  initial_backoff: 250ms
  max_backoff: 2s
`)
	apps := c.Workflows.Apps
	if c.Workflows.Concurrency != 3 || c.Workflows.JobTimeout != 90*time.Second || len(apps) != 2 ||
		!reflect.DeepEqual(apps[0], relay.WorkflowConfig{WorkID: "Refund-Bot", EventType: "fastgpt", Channel: "fg", AppKey: "${FG_REFUND_KEY}", AllowedKeys: []string{"crm", "billing"}}) ||
		apps[1].EventType != "fastgpt" {
		t.Fatalf("workflows %+v", c.Workflows)
	}
	if c.Callbacks.Secret != "${CB_SECRET}" || !c.Callbacks.AllowPrivate || c.Callbacks.MaxAttempts != 4 || c.Callbacks.InitialBackoff != 250*time.Millisecond ||
		c.Callbacks.MaxBackoff != 2*time.Second || c.Callbacks.Timeout != 10*time.Second {
		t.Fatalf("callbacks %+v", c.Callbacks)
	}

	// The secret can come from the environment alone.
	t.Setenv("RELAY_CALLBACKS_SECRET", "from-env")
	if c = cfgLoad(t, wfChannels); c.Callbacks.Secret != "from-env" {
		t.Fatalf("RELAY_CALLBACKS_SECRET: %q", c.Callbacks.Secret)
	}
}

func TestWorkflowConfigErrors(t *testing.T) {
	cfgCleanEnv(t)
	for yaml, want := range map[string]string{
		"workflows:\n  apps:\n    - {channel: fg}\n":                                              "workflows.apps[0].work_id is required",
		"workflows:\n  apps:\n    - {work_id: a, channel: fg}\n    - {work_id: a, channel: fg}\n": "work_id is used twice",
		"workflows:\n  apps:\n    - {work_id: a, channel: nope}\n":                                `channel "nope" names no configured channel`,
		"workflows:\n  apps:\n    - {work_id: a, channel: demo}\n":                                `event_type "fastgpt" needs a channel of that kind`,
		"workflows:\n  apps:\n    - {work_id: a, channel: fg, event_type: dify}\n":                `event_type "dify" needs a channel of that kind`,
		"workflows:\n  concurrency: 0\n":                                                          "workflows.concurrency must be positive",
		"callbacks:\n  max_attempts: 0\n":                                                         "callbacks.max_attempts must be positive",
		"callbacks:\n  initial_backoff: 5s\n  max_backoff: 1s\n":                                  "initial_backoff must be positive and at most",
		"callbacks:\n  timeout: 0s\n":                                                             "callbacks.timeout must be positive",
	} {
		_, err := relay.LoadConfig(cfgWrite(t, wfChannels+yaml))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", yaml, err, want)
		}
	}
}

// The shipped config.yaml starts with only the demo upstream: its workflows and callbacks sections are
// valid and harmless.
func TestWorkflowConfigExampleFile(t *testing.T) {
	cfgCleanEnv(t)
	if _, err := os.Stat("../config.yaml"); err != nil {
		t.Skip("no config.yaml")
	}
	c, err := relay.LoadConfig("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Workflows.Apps) != 0 || c.Callbacks.Secret != "" || c.Callbacks.AllowPrivate {
		t.Fatalf("example config: %+v %+v", c.Workflows, c.Callbacks)
	}
}
