package spark

import (
	"reflect"
	"testing"

	"relay/adaptor"
)

var _ adaptor.Adaptor = New()
var _ adaptor.Validator = New()

func TestResolveTable(t *testing.T) {
	const host = "wss://spark-api.xf-yun.com"
	for _, tc := range []struct{ model, url, domain string }{
		{"lite", host + "/v1.1/chat", "lite"},
		{"general", host + "/v1.1/chat", "lite"},
		{"Spark-Lite", host + "/v1.1/chat", "lite"},
		{"generalv3", host + "/v3.1/chat", "generalv3"},
		{"Spark-Pro", host + "/v3.1/chat", "generalv3"},
		{"pro-128k", host + "/chat/pro-128k", "pro-128k"},
		{"Spark-Pro-128K", host + "/chat/pro-128k", "pro-128k"},
		{"generalv3.5", host + "/v3.5/chat", "generalv3.5"},
		{"Spark-Max", host + "/v3.5/chat", "generalv3.5"},
		{"max-32k", host + "/chat/max-32k", "max-32k"},
		{"Spark-Max-32K", host + "/chat/max-32k", "max-32k"},
		{"4.0Ultra", host + "/v4.0/chat", "4.0Ultra"},
		{"Spark-4.0-Ultra", host + "/v4.0/chat", "4.0Ultra"},
		{"generalv2", host + "/v2.1/chat", "generalv2"},
		{"kjwx", "wss://spark-openapi-n.cn-huabei-1.xf-yun.com/v1.1/chat_kjwx", "kjwx"},
	} {
		u, d, ok := Resolve(tc.model)
		if !ok || u != tc.url || d != tc.domain {
			t.Errorf("Resolve(%q) = %q %q %v, want %q %q", tc.model, u, d, ok, tc.url, tc.domain)
		}
	}
	if _, _, ok := Resolve("gpt-4o"); ok {
		t.Error("gpt-4o resolved")
	}
}

func TestResolveOverrides(t *testing.T) {
	for _, tc := range []struct {
		name, baseURL, domain, model string
		want                         target
		err                          bool
	}{
		{"model only", "", "", "max", target{"wss://spark-api.xf-yun.com/v3.5/chat", "generalv3.5", 8192}, false},
		{"full base_url keeps its path", "ws://127.0.0.1:9/mock/path", "", "lite", target{"ws://127.0.0.1:9/mock/path", "lite", 4096}, false},
		{"base_url without path gets the model's", "wss://proxy.example:8443", "", "pro-128k", target{"wss://proxy.example:8443/chat/pro-128k", "pro-128k", 4096}, false},
		{"domain override", "", "max-32k", "my-model", target{"wss://spark-api.xf-yun.com/chat/max-32k", "max-32k", 8192}, false},
		{"domain override wins over model", "", "custom-domain", "lite", target{"wss://spark-api.xf-yun.com/v1.1/chat", "custom-domain", 0}, false},
		{"unknown model on a full base_url is its own domain", "ws://h/x/chat", "", "newmodel", target{"ws://h/x/chat", "newmodel", 0}, false},
		{"unknown model, no url", "", "", "newmodel", target{}, true},
		{"unknown model, base_url without path", "wss://h", "", "newmodel", target{}, true},
	} {
		ch := &adaptor.Channel{Name: "c", BaseURL: tc.baseURL, Credentials: map[string]string{}}
		if tc.domain != "" {
			ch.Credentials["domain"] = tc.domain
		}
		got, err := resolve(ch, tc.model)
		if tc.err {
			want := &adaptor.Error{Status: 404, Type: adaptor.TypeNotFound, Code: "model_not_found", Param: "model",
				Message: "spark channel c cannot map model " + tc.model + " to a Spark URL; set base_url (with path) or use a known model name"}
			if !reflect.DeepEqual(err, want) {
				t.Errorf("%s: err %#v", tc.name, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v, want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	full := func() map[string]string {
		return map[string]string{"app_id": "a", "api_key": "k", "api_secret": "s"}
	}
	for _, tc := range []struct {
		name string
		ch   *adaptor.Channel
		want string
	}{
		{"ok", &adaptor.Channel{Credentials: full(), Models: []string{"lite", "Spark-Max"}}, ""},
		{"ok, mapped model", &adaptor.Channel{Credentials: full(), Models: []string{"gpt-4o"}, ModelMap: map[string]string{"gpt-4o": "4.0Ultra"}}, ""},
		{"ok, custom model on a full URL", &adaptor.Channel{Credentials: full(), BaseURL: "wss://h/v9/chat", Models: []string{"x"}}, ""},
		{"nothing", &adaptor.Channel{}, "credentials.app_id, credentials.api_key, credentials.api_secret required for kind spark"},
		{"no secret", &adaptor.Channel{Credentials: map[string]string{"app_id": "a", "api_key": "k"}}, "credentials.api_secret required for kind spark"},
		{"bad url", &adaptor.Channel{Credentials: full(), BaseURL: "::"}, "base_url is not a URL: want wss://host/path"},
		{"bad scheme", &adaptor.Channel{Credentials: full(), BaseURL: "ftp://h/v1.1/chat"}, "base_url must be a ws:// or wss:// URL for kind spark"},
		{"unroutable model", &adaptor.Channel{Credentials: full(), Models: []string{"lite", "gpt-4o"}},
			"model gpt-4o has no Spark URL: set base_url with the product's path, or use a known model name (lite, generalv3, pro-128k, generalv3.5, max-32k, 4.0Ultra)"},
	} {
		err := New().Validate(tc.ch)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// An unknown model fails before any connection.
func TestStreamUnknownModel(t *testing.T) {
	ch := &adaptor.Channel{Name: "c", Credentials: map[string]string{"app_id": "a", "api_key": "k", "api_secret": "s"}}
	_, err := New().Stream(t.Context(), ch, &adaptor.Request{Body: []byte(`{"messages":[{"role":"user","content":"hi"}]}`), Model: "gpt-4o"})
	if ae, ok := err.(*adaptor.Error); !ok || ae.Status != 404 || ae.Code != "model_not_found" {
		t.Errorf("got %#v", err)
	}
}
