package service

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// HealthcheckArg is the subcommand that turns a service binary into its own
// container health probe: images are FROM scratch, with no curl or shell.
const HealthcheckArg = "healthcheck"

// IsHealthcheck reports whether the process was started as a probe.
func IsHealthcheck() bool { return len(os.Args) > 1 && os.Args[1] == HealthcheckArg }

// Probe GETs http://<addr><path> (addr as configured; a wildcard host means
// this machine) and returns the exit code for a container health check.
func Probe(addr, path string) int {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(host, port) + path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "healthcheck:", resp.Status)
		return 1
	}
	return 0
}
