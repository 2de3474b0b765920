//go:build !faultpoints

// Package fault holds the orders service's fault points for tests of
// crashes and lost replies. Ordinary builds compile them away; a build with
// -tags faultpoints reads ORDERS_FAULT_POINT ("<point>" or "<point>:<n>",
// the n-th time the point is reached, counting from 1).
package fault

// Crash kills the process at point (faultpoints builds only).
func Crash(string) {}

// Fire reports whether point is reached now (faultpoints builds only).
func Fire(string) bool { return false }
