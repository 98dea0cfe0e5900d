package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the p-th percentile (0..100) of sorted by the nearest-rank method, so every
// reported figure is a latency that was actually observed; 0 when sorted is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// spread summarises one figure across rounds: two-core machines are noisy, so the report gives the
// median and shows how far single rounds strayed.
type spread struct {
	Min, Med, Max float64
	N             int
}

func spreadOf(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return spread{Min: s[0], Med: med, Max: s[n-1], N: n}
}

// micros converts a duration to float microseconds, the unit the report computes in.
func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
