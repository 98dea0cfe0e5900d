package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// report renders the run as Markdown: machine, setup, then medians across rounds with their spread.
func (b *bench) report(date string) string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	m := b.machine
	o := b.cfg.mock
	p("# relay overhead benchmark, %s", date)
	p("")
	machineRows(p, m, b.cfg.commandLine)
	p("| Mock upstream | %d chunks per stream + usage chunk + [DONE], %v between chunks, %d-byte answer, %.0f%% injected failures |",
		o.Chunks, o.Delay, o.Size, o.Fail*100)
	p("| Hunyuan-shaped mock | same knobs; native API frames (PascalCase, `Note`, cumulative `Usage` on every frame, `FinishReason` on the last, no [DONE]), signature not checked |")
	env := ""
	if len(b.cfg.relayEnv) > 0 {
		env = "; environment `" + b.cfg.relayEnv.String() + "`"
	}
	p("| Relay setup | one `openai` channel to the mock, one `hunyuan` channel to the Hunyuan-shaped mock, fresh SQLite request log (always on), log level warn%s |", env)
	p("| Rounds | %d; each round measures every cell as direct → floor → relay → translate, %d requests per lane (warm-up %d) |",
		b.cfg.rounds, b.cfg.requests, b.cfg.warmup)
	p("| Duration | %s |", b.elapsed.Round(time.Second))
	p("| Other load | other processes used %s of the machine's CPU during the lanes (median [min–max]); load average %s at start, %s at end |",
		fmtSpreadWith(b.foreignShares(), fmtPercent), b.loadStart, b.loadEnd)
	p("")
	if other := spreadOf(b.foreignShares()); other.N > 0 && other.Med > 0.10 {
		p("**Warning: other processes used %s of the machine's CPU during the lanes; the figures are indicative only. "+
			"Re-run on a quiet machine for numbers to compare.**", fmtPercent(other.Med))
		p("")
	}
	p("Lanes: **direct** = load generator → mock; **floor** = → bare `httputil.ReverseProxy` → mock; " +
		"**relay** = → relay → mock (passthrough); **translate** = the same OpenAI request with model `" + hunyuanModel + "` → relay → " +
		"Hunyuan-shaped mock (OpenAI in, Hunyuan native out and back). " +
		"All are separate processes on loopback, sharing the machine's CPUs with the load generator. " +
		"*added* for translate is also against direct to the OpenAI mock; the two mocks send the same answer in the same number of frames.")
	p("Figures are medians across rounds, `[min–max]` the spread of single rounds. *added* = lane − direct in the same round. "+
		"CPU is utime+stime from /proc/<pid>/stat over the lane's run (+%v settle), in CPU-seconds per 1,000 requests.", b.cfg.settle)
	p("")

	p("## Non-streaming")
	p("")
	p("| conc | lane | req/s | p50 | p99 | added p50 | added p99 | proxy CPU s/1k req | errors |")
	p("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range b.cells {
		if c.stream {
			continue
		}
		for _, lane := range laneNames {
			p("| %d | %s | %s | %s | %s | %s | %s | %s | %s |", c.conc, lane,
				b.fmtSpread(c, lane, fmtRate, rps), b.fmtSpread(c, lane, fmtMicros, p50), b.fmtMed(c, lane, fmtMicros, p99),
				b.fmtAdded(c, lane, p50, true), b.fmtAdded(c, lane, p99, false), b.fmtProxyCPU(c, lane), b.fmtErrors(c, lane))
		}
	}
	p("")

	p("## Streaming (%d chunks, include_usage)", o.Chunks)
	p("")
	p("p50/p99 are of the whole stream; TTFB is the time to the first `data:` event; gap is the time between "+
		"consecutive chunk events as the client sees them (with %v between chunks at the mock, it mostly shows per-chunk processing).", o.Delay)
	p("")
	p("| conc | lane | req/s | p50 | p99 | added p50 | added p99 | TTFB p50 | added TTFB p50 | added TTFB p99 | gap p50 | gap p99 | proxy CPU s/1k req | errors |")
	p("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range b.cells {
		if !c.stream {
			continue
		}
		for _, lane := range laneNames {
			p("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", c.conc, lane,
				b.fmtSpread(c, lane, fmtRate, rps), b.fmtSpread(c, lane, fmtMicros, p50), b.fmtMed(c, lane, fmtMicros, p99),
				b.fmtAdded(c, lane, p50, true), b.fmtAdded(c, lane, p99, false),
				b.fmtMed(c, lane, fmtMicros, ttfb50), b.fmtAdded(c, lane, ttfb50, true), b.fmtAdded(c, lane, ttfb99, false),
				b.fmtMed(c, lane, fmtMicros, gap50), b.fmtMed(c, lane, fmtMicros, gap99), b.fmtProxyCPU(c, lane), b.fmtErrors(c, lane))
		}
	}
	p("")

	p("## Ratios")
	p("")
	p("Per-round ratios, median `[min–max]`. Throughput ratios above 1 are impossible for a proxy; " +
		"CPU ratio = relay CPU per request ÷ floor CPU per request. " +
		"Translate ÷ passthrough = relay CPU per request on the translate lane ÷ on the relay lane (target ≤ 1.5).")
	p("")
	p("| cell | relay ÷ direct req/s | relay ÷ floor req/s | floor ÷ direct req/s | relay ÷ floor CPU/req | relay − floor p50 | translate ÷ passthrough CPU/req |")
	p("|---|---:|---:|---:|---:|---:|---:|")
	for _, c := range b.cells {
		p("| %s | %s | %s | %s | %s | %s | %s |", c,
			b.fmtRatio(c, "relay", "direct", rps), b.fmtRatio(c, "relay", "floor", rps), b.fmtRatio(c, "floor", "direct", rps),
			fmtSpreadWith(b.pairs(c, "relay", "floor", func(a, f runStats) float64 { return cpuPer1k(a, "relay") / cpuPer1k(f, "floor") }), fmtRatio),
			fmtSpreadWith(b.pairs(c, "relay", "floor", func(a, f runStats) float64 { return a.p50 - f.p50 }), fmtSigned),
			fmtSpreadWith(b.pairs(c, "translate", "relay", func(t, r runStats) float64 { return cpuPer1k(t, "relay") / cpuPer1k(r, "relay") }), fmtRatio))
	}
	p("")

	p("## CPU per 1,000 requests (CPU-seconds, median `[min–max]`)")
	p("")
	p("Every process is charged for the same lane's run, so the mock and the load generator columns show what the rest of the box spent meanwhile. " +
		"The mock column is the mock that answered the lane (the Hunyuan-shaped one for translate).")
	p("")
	p("| cell | lane | relay or floor | mock | load generator | other processes (share of machine) |")
	p("|---|---|---:|---:|---:|---:|")
	for _, c := range b.cells {
		for _, lane := range laneNames {
			p("| %s | %s | %s | %s | %s | %s |", c, lane, b.fmtProxyCPU(c, lane),
				fmtSpreadWith(b.series(c, lane, func(s runStats) float64 { return cpuPer1k(s, laneMock(lane)) }), fmtCPU),
				fmtSpreadWith(b.series(c, lane, func(s runStats) float64 { return cpuPer1k(s, "loadgen") }), fmtCPU),
				fmtSpreadWith(b.series(c, lane, func(s runStats) float64 { return s.foreign }), fmtPercent))
		}
	}
	p("")

	if len(b.mem) > 0 {
		p("## Memory: %d concurrent slow streams (%v between chunks, %d chunks each)", b.cfg.streams, b.cfg.slowDelay, o.Chunks)
		p("")
		p("RSS is VmRSS from /proc/<pid>/status, sampled every 20 ms; VmHWM is the process's lifetime peak. The baseline is " +
			"the RSS just before the test (after the throughput rounds and, for the relay, 11 s of quiet in which its idle release runs); \"after\" samples start when the last stream ended and the " +
			"load generator closed its connections, and stop once RSS is within 10%% of the baseline. A Go process returns " +
			"freed memory to the OS only after a GC, and an idle one runs a GC only every 2 minutes; the relay forces one " +
			"once it has been idle for 5 s, and again (at most once a minute) for memory freed later, such as upstream " +
			"connections closed after their 90 s idle timeout. `-rss-wait 3m` follows it long enough to see it come back. " +
			"*peak − start* is against the RSS of the freshly started relay: an upper bound, as it also counts what the " +
			"throughput rounds left (warm connections, caches, heap the runtime kept).")
		p("")
		p("| process | streams ok | RSS at start | baseline | peak RSS | VmHWM | peak − baseline per stream | peak − start per stream | after the load | back within 10%% | TTFB p99 | gap p50 | gap p99 |")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|")
		for _, r := range b.mem {
			var after []string
			for _, pt := range r.after {
				after = append(after, fmt.Sprintf("%v: %s", pt.at, fmtBytes(pt.rss)))
			}
			back := "no (within " + b.cfg.rssWait.String() + ")"
			if r.returnedAt >= 0 {
				back = "yes, after " + r.returnedAt.String()
			}
			perStream := func(base int64) string {
				return fmt.Sprintf("%.1f KiB", float64(r.peak-base)/float64(max(r.streams, 1))/1024)
			}
			start, fromStart := "—", "—"
			if r.startRSS > 0 {
				start, fromStart = fmtBytes(r.startRSS), perStream(r.startRSS)
			}
			p("| %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", r.name, r.load.ok, r.streams, start,
				fmtBytes(r.before), fmtBytes(r.peak), fmtBytes(r.hwm), perStream(r.before), fromStart, strings.Join(after, ", "), back,
				fmtMicros(r.load.ttfb99), fmtMicros(r.load.gap50), fmtMicros(r.load.gap99))
		}
		p("")
		for _, r := range b.mem {
			if !r.rtOK {
				continue
			}
			p("Where the %s's memory went: its Go runtime's own figures (from its `/metrics`, read every 250 ms) just before the test "+
				"and at the sample with the most goroutines alive, as growth per stream. Stacks and heap in use make up most of the RSS "+
				"growth; heap in use also holds garbage not yet collected. `BenchmarkOpenStreamMemory` (relay package) measures the "+
				"same after a GC, in process.", r.name)
			p("")
			p("| | goroutines | stacks | heap in use | heap allocated |")
			p("|---|---:|---:|---:|---:|")
			base, peak := r.rtBase, r.rtPeak
			p("| before | %.0f | %s | %s | %s |", base.goroutines, fmtBytes(int64(base.stack)), fmtBytes(int64(base.heapInuse)), fmtBytes(int64(base.heapAlloc)))
			p("| busiest sample | %.0f | %s | %s | %s |", peak.goroutines, fmtBytes(int64(peak.stack)), fmtBytes(int64(peak.heapInuse)), fmtBytes(int64(peak.heapAlloc)))
			per := func(a, b float64) string { return fmt.Sprintf("%.1f KiB", (b-a)/float64(max(r.streams, 1))/1024) }
			p("| growth per stream | %.2f | %s | %s | %s |", (peak.goroutines-base.goroutines)/float64(max(r.streams, 1)),
				per(base.stack, peak.stack), per(base.heapInuse, peak.heapInuse), per(base.heapAlloc, peak.heapAlloc))
			p("")
		}
	}
	return w.String()
}

// Field extractors for the report.
func rps(s runStats) float64    { return s.rps }
func p50(s runStats) float64    { return s.p50 }
func p99(s runStats) float64    { return s.p99 }
func ttfb50(s runStats) float64 { return s.ttfb50 }
func ttfb99(s runStats) float64 { return s.ttfb99 }
func gap50(s runStats) float64  { return s.gap50 }
func gap99(s runStats) float64  { return s.gap99 }

// cpuPer1k is the CPU-seconds role used per 1,000 requests of the run.
func cpuPer1k(s runStats, role string) float64 {
	if s.total == 0 {
		return math.NaN()
	}
	return s.cpu[role] / float64(s.total) * 1000
}

func (b *bench) series(c cell, lane string, f func(runStats) float64) []float64 {
	var out []float64
	for _, s := range b.results[c][lane] {
		out = append(out, f(s))
	}
	return out
}

// pairs applies f to lane a and lane o of the same round, so round-to-round drift cancels out.
func (b *bench) pairs(c cell, a, o string, f func(a, o runStats) float64) []float64 {
	ra, ro := b.results[c][a], b.results[c][o]
	var out []float64
	for i := range min(len(ra), len(ro)) {
		out = append(out, f(ra[i], ro[i]))
	}
	return out
}

func (b *bench) fmtSpread(c cell, lane string, format func(float64) string, f func(runStats) float64) string {
	return fmtSpreadWith(b.series(c, lane, f), format)
}

func (b *bench) fmtMed(c cell, lane string, format func(float64) string, f func(runStats) float64) string {
	return format(spreadOf(b.series(c, lane, f)).Med)
}

func (b *bench) fmtAdded(c cell, lane string, f func(runStats) float64, withSpread bool) string {
	if lane == "direct" {
		return "—"
	}
	xs := b.pairs(c, lane, "direct", func(l, d runStats) float64 { return f(l) - f(d) })
	if !withSpread {
		return fmtSigned(spreadOf(xs).Med)
	}
	return fmtSpreadWith(xs, fmtSigned)
}

func (b *bench) fmtRatio(c cell, a, o string, f func(runStats) float64) string {
	return fmtSpreadWith(b.pairs(c, a, o, func(x, y runStats) float64 { return f(x) / f(y) }), fmtRatio)
}

func (b *bench) fmtProxyCPU(c cell, lane string) string {
	role := laneProc(lane)
	if role == "" {
		return "—"
	}
	return fmtSpreadWith(b.series(c, lane, func(s runStats) float64 { return cpuPer1k(s, role) }), fmtCPU)
}

func (b *bench) fmtErrors(c cell, lane string) string {
	errs, total := 0, 0
	first := ""
	for _, s := range b.results[c][lane] {
		errs += s.errs
		total += s.total
		if first == "" {
			first = s.firstErr
		}
	}
	return fmtErrorCount(errs, total, first)
}

// machineRows opens a report's setup table: where and how it was measured.
func machineRows(p func(format string, args ...any), m machine, commandLine string) {
	p("| | |")
	p("|---|---|")
	p("| Machine | %d CPUs (runtime.NumCPU), %s, %s RAM |", m.CPUs, m.CPUModel, m.MemTotal)
	p("| Kernel | %s |", m.Kernel)
	p("| Go | harness %s, relay %s |", m.GoHarn, orDash(m.GoRelay))
	p("| Relay revision | %s |", orDash(m.RelayRev))
	p("| Command | `%s` |", commandLine)
}

// fmtErrorCount is "failed/total", with the first error when any failed (a table cell: no '|').
func fmtErrorCount(errs, total int, first string) string {
	if errs == 0 {
		return fmt.Sprintf("0/%d", total)
	}
	return fmt.Sprintf("%d/%d (%s)", errs, total, strings.ReplaceAll(first, "|", "/"))
}

func fmtSpreadWith(xs []float64, format func(float64) string) string {
	s := spreadOf(xs)
	if s.N == 0 {
		return "—"
	}
	if s.N == 1 {
		return format(s.Med)
	}
	return fmt.Sprintf("%s [%s–%s]", format(s.Med), format(s.Min), format(s.Max))
}

// foreignShares is every lane run's share of CPU used by processes outside the benchmark.
func (b *bench) foreignShares() []float64 {
	var out []float64
	for _, c := range b.cells {
		for _, lane := range laneNames {
			out = append(out, b.series(c, lane, func(s runStats) float64 { return s.foreign })...)
		}
	}
	return out
}

func fmtPercent(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }
func fmtRate(v float64) string    { return fmt.Sprintf("%.0f", v) }
func fmtCPU(v float64) string     { return fmt.Sprintf("%.3f", v) }
func fmtRatio(v float64) string   { return fmt.Sprintf("%.2f", v) }

// fmtMicros prints a duration given in µs with a unit that keeps three significant digits.
func fmtMicros(us float64) string {
	a := math.Abs(us)
	switch {
	case math.IsNaN(us):
		return "—"
	case a < 1000:
		return fmt.Sprintf("%.0fµs", us)
	case a < 1e6:
		return fmt.Sprintf("%.2fms", us/1000)
	default:
		return fmt.Sprintf("%.2fs", us/1e6)
	}
}

func fmtSigned(us float64) string {
	if us >= 0 {
		return "+" + fmtMicros(us)
	}
	return fmtMicros(us)
}

func fmtBytes(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
