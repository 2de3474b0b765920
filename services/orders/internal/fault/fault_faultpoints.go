//go:build faultpoints

package fault

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

var point, nth = func() (string, int64) {
	p, n, _ := strings.Cut(os.Getenv("ORDERS_FAULT_POINT"), ":")
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil || v < 1 {
		v = 1
	}
	return p, v
}()

var passed atomic.Int64

// Fire reports whether p is the configured point reached for the n-th time,
// and says so on stderr (tests read it to know the fault happened).
func Fire(p string) bool {
	if p != point || passed.Add(1) != nth {
		return false
	}
	os.Stderr.WriteString("FAULT POINT " + p + " fired\n")
	return true
}

// Crash kills this process with SIGKILL (no deferred code runs, nothing is
// flushed: what kill -9 does) when the configured point is reached.
func Crash(p string) {
	if !Fire(p) {
		return
	}
	os.Stderr.WriteString("killing this process\n")
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
