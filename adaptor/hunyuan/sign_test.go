package hunyuan

import (
	"strings"
	"testing"
	"time"
)

// The vectors of /work/shared/wire/hunyuan.md §2.1.
func TestAuthorizationVectors(t *testing.T) {
	cvmPayload := []byte(`{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}`)
	hyPayload := []byte(`{"Model":"hunyuan-lite","Messages":[{"Role":"user","Content":"Hello"}],"Stream":false}`)
	if len(cvmPayload) != 86 || len(hyPayload) != 86 {
		t.Fatalf("payload lengths %d, %d; the doc says 86", len(cvmPayload), len(hyPayload))
	}
	tests := []struct {
		name string
		in   SignInput
		want string
	}{
		{"A official", SignInput{
			SecretID: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", SecretKey: "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
			Service: "cvm", Host: "cvm.tencentcloudapi.com", ContentType: "application/json; charset=utf-8",
			Timestamp: 1551113065, Payload: cvmPayload,
		}, "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"},
		{"B official with action", SignInput{
			SecretID: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******", SecretKey: "Gu5t9xGARNpq86cd98joQYCN3*******",
			Service: "cvm", Host: "cvm.tencentcloudapi.com", ContentType: "application/json; charset=utf-8",
			Action: "DescribeInstances", Timestamp: 1551113065, Payload: cvmPayload,
		}, "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature=be4f67d323c78ab9acb7395e43c0dbcf822a9cfac32fea2449a7bc7726b770a3"},
		{"C hunyuan", SignInput{
			SecretID: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", SecretKey: "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
			Service: "hunyuan", Host: "hunyuan.tencentcloudapi.com", ContentType: "application/json",
			Timestamp: 1700000000, Payload: hyPayload,
		}, "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2023-11-14/hunyuan/tc3_request, SignedHeaders=content-type;host, Signature=aa2e28bc8b722a7a51cd5e842cdbca62e8c398689d5230167e46104b332e5a35"},
		{"D hunyuan with action", SignInput{
			SecretID: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", SecretKey: "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
			Service: "hunyuan", Host: "hunyuan.tencentcloudapi.com", ContentType: "application/json",
			Action: "ChatCompletions", Timestamp: 1700000000, Payload: hyPayload,
		}, "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2023-11-14/hunyuan/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature=1449b9054003d25516d431a02c561f76c6e0f3bcf99ea525eedd01ce95272146"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Authorization(tc.in); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// The date in the scope is the UTC date: 23:30 UTC is already the next day in Beijing.
func TestAuthorizationUsesUTCDate(t *testing.T) {
	saved := time.Local
	time.Local = time.FixedZone("CST", 8*3600) // as on a server in China
	defer func() { time.Local = saved }()
	in := SignInput{SecretID: "id", SecretKey: "k", Service: "hunyuan", Host: "h", ContentType: "application/json",
		Timestamp: 1700004600} // 2023-11-14T23:30:00Z
	got := Authorization(in)
	want := "Credential=id/2023-11-14/hunyuan/tc3_request,"
	if !strings.Contains(got, want) {
		t.Fatalf("%s lacks %s", got, want)
	}
}
