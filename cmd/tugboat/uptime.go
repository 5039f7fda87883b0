package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"
)

// initTime approximates the process start where /proc is unavailable.
var initTime = time.Now()

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; it is 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// sinceProcessStart returns how long ago the process started: from the
// kernel's start time in /proc/self/stat compared with /proc/uptime (10 ms
// resolution, and it includes the runtime and package initialisation), or
// else since this package was initialised.
func sinceProcessStart() time.Duration {
	if d, ok := procSinceStart(); ok {
		return d
	}
	return time.Since(initTime)
}

func procSinceStart() (time.Duration, bool) {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may contain spaces; fields after it start
	// at field 3, and field 22 is the start time in clock ticks since boot.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return 0, false
	}
	startTicks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		return 0, false
	}
	uptime, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, false
	}
	up, _, _ := strings.Cut(string(uptime), " ")
	upSeconds, err := strconv.ParseFloat(up, 64)
	if err != nil {
		return 0, false
	}
	d := time.Duration(upSeconds*float64(time.Second)) - time.Duration(startTicks)*time.Second/clockTicks
	if d < 0 {
		return 0, false
	}
	return d, true
}
