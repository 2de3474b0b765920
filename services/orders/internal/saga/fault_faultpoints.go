//go:build faultpoints

package saga

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// faultPoint is "<point>" or "<point>:<n>" (die the n-th time the point is
// passed, counting from 1), read once at start.
var faultPoint, faultNth = func() (string, int64) {
	p, n, _ := strings.Cut(os.Getenv("ORDERS_FAULT_POINT"), ":")
	nth, err := strconv.ParseInt(n, 10, 64)
	if err != nil || nth < 1 {
		nth = 1
	}
	return p, nth
}()

var passed atomic.Int64

// fault kills this process with SIGKILL (no deferred code runs, nothing is
// flushed: what kill -9 does) when the configured point is reached.
func fault(point string) {
	if point != faultPoint || passed.Add(1) < faultNth {
		return
	}
	os.Stderr.WriteString("FAULT POINT " + point + ": killing this process\n")
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
