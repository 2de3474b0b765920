//go:build !faultpoints

package saga

// fault is a crash point for tests; ordinary builds compile it away. Build
// with -tags faultpoints and set ORDERS_FAULT_POINT to kill the process there.
func fault(string) {}
