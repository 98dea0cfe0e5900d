package relay_test

import "github.com/openai/openai-go/v3/option"

func optionKey(k string) option.RequestOption { return option.WithAPIKey(k) }

func optionBase(u string) option.RequestOption { return option.WithBaseURL(u) }
func optionNoRetry() option.RequestOption      { return option.WithMaxRetries(0) }
