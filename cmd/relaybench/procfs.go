package main

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// Process figures come from /proc so that each process (relay, floor, mock, this load generator) is
// measured on its own, without instrumenting the relay.

var clkTck = sync.OnceValue(func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && v > 0 {
			return float64(v)
		}
	}
	return 100 // USER_HZ on every mainstream Linux build
})

// parseStatTicks returns utime+stime (clock ticks) from the text of /proc/<pid>/stat. The command name
// may hold spaces and parentheses, so fields are counted from the last ')'.
func parseStatTicks(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	// After the name: state is field 3 of the man page, utime 14 and stime 15.
	if len(f) < 13 {
		return 0, errors.New("stat: too few fields")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	return u + s, nil
}

// cpuSeconds is the user+system CPU time pid has used so far ("self" for this process).
func cpuSeconds(pid string) (float64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	t, err := parseStatTicks(string(b))
	return float64(t) / clkTck(), err
}

// memInfo is resident memory in bytes: now (VmRSS) and the process's lifetime peak (VmHWM).
type memInfo struct{ RSS, HWM int64 }

func parseStatus(status string) (memInfo, error) {
	var m memInfo
	found := 0
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("status: odd %s line %q", name, sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("status: %w", err)
		}
		if name == "VmRSS" {
			m.RSS = kb << 10
		} else {
			m.HWM = kb << 10
		}
		found++
	}
	if found != 2 {
		return m, errors.New("status: VmRSS/VmHWM missing")
	}
	return m, nil
}

func readMem(pid int) (memInfo, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memInfo{}, err
	}
	return parseStatus(string(b))
}

// machine describes where the numbers were taken; results from different boxes are not comparable.
type machine struct {
	CPUs     int
	CPUModel string
	Kernel   string
	MemTotal string
	GoHarn   string
	GoRelay  string
	RelayRev string
}

func machineInfo(relayBin string) machine {
	m := machine{CPUs: runtime.NumCPU(), GoHarn: runtime.Version(), CPUModel: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(string(b))
	}
	if b, err := os.ReadFile("/proc/version"); err == nil {
		m.Kernel = kernelVersion(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if _, rest, ok := strings.Cut(string(b), "MemTotal:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	if bi, err := buildinfo.ReadFile(relayBin); err == nil {
		m.GoRelay = bi.GoVersion
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = " (with uncommitted changes)"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			m.RelayRev = rev + dirty
		}
	}
	return m
}

func cpuModel(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		name, v, ok := strings.Cut(line, ":")
		// x86 says "model name"; arm64 kernels often only give "CPU part" or "Hardware".
		if ok && (strings.TrimSpace(name) == "model name" || strings.TrimSpace(name) == "Hardware") {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// kernelVersion keeps "Linux version X" from /proc/version, dropping the compiler details.
func kernelVersion(v string) string {
	f := strings.Fields(v)
	if len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return string(bytes.TrimSpace([]byte(v)))
}

// parseMachineBusy returns the CPU-seconds all CPUs spent in user and system mode, from the first line
// of /proc/stat. Interrupt and softirq time is left out: loopback networking of our own processes
// lands there, and it would be mistaken for someone else's load.
func parseMachineBusy(stat string) (float64, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: no cpu line")
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 8} { // user, nice, system, steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += v
	}
	return float64(busy) / clkTck(), nil
}

func machineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineBusy(string(b))
}

// loadAvg is the 1-minute load average, to show how busy the box was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
