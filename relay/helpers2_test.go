package relay_test

import "github.com/openai/openai-go/v3/option"

func optionKey(k string) option.RequestOption { return option.WithAPIKey(k) }
