package e2e

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/meshtest"
	"github.com/marketmesh/marketmesh/plugins/saasfake"
)

// binDir holds the users and api binaries, built once per test run.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	serveBareIfAsked() // TestBenchTable's ceiling is this binary too
	// Tests run the binaries with the race detector; benchmarks (and
	// make bench's table) measure them without.
	race := flag.Lookup("test.bench").Value.String() == "" && os.Getenv("BENCH_TABLE") == ""
	dir, err := os.MkdirTemp("", "marketmesh-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// Each binary is built inside its own module folder, so the build uses
	// that module's go.mod: it works with the workspace and with GOWORK=off.
	dirs := map[string]string{"api": filepath.Join("..", "api")}
	for _, s := range services {
		dirs[s] = filepath.Join("..", "services", s)
	}
	for name, modDir := range dirs {
		args := []string{"build", "-o", filepath.Join(dir, name), "."}
		if name == "orders" {
			// Crash points for the kill -9 tests (ORDERS_FAULT_POINT).
			args = append(args[:1], append([]string{"-tags", "faultpoints"}, args[1:]...)...)
		}
		if race {
			args = append(args[:1], append([]string{"-race"}, args[1:]...)...)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = modDir
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build %s: %v\n", name, err)
			os.Exit(1)
		}
	}
	recordClients(httpClient, buyingClient, chaosClient) // exchanges with the api are checked against the OpenAPI document: recorder_test.go
	code := checkRecorded(m.Run())
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one service process of the mesh under test.
type proc struct {
	t    testing.TB
	name string
	env  []string

	mu  sync.Mutex
	cmd *exec.Cmd
	log safeBuffer // output of every run, for failure reports
}

// safeBuffer is a bytes.Buffer that exec's copying goroutines may write to
// while the test reads it.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(filepath.Join(binDir, p.name))
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = &p.log, &p.log
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd = cmd
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() { p.signal(syscall.SIGTERM) }

// kill sends SIGKILL: no deregistration, no flush.
func (p *proc) kill() { p.signal(syscall.SIGKILL) }

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if sig == syscall.SIGTERM && err != nil {
			p.t.Errorf("%s exited uncleanly after SIGTERM: %v", p.name, err)
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		p.t.Fatalf("%s did not exit within 15 s of %v", p.name, sig)
	}
}

// exited reports whether the process has died (it may not be reaped yet:
// a zombie counts as exited).
func (p *proc) exited() bool {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X'
}

// pause and resume freeze the process (SIGSTOP): a hung instance that keeps
// its sockets open but never answers.
func (p *proc) pause()  { p.raw(syscall.SIGSTOP) }
func (p *proc) resume() { p.raw(syscall.SIGCONT) }

func (p *proc) raw(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// services are the mesh's service binaries, started in this order before the api.
var services = []string{"users", "products", "publications", "images", "orders", "notifications"}

// mesh is a Consul agent, every service and the api, all real processes.
type mesh struct {
	t      testing.TB
	consul *meshtest.Agent
	procs  map[string]*proc
	users  *proc // the same as procs["users"]
	api    *proc
	url    string // the api's base URL
	opsURL string // the api's ops listener (/readyz, /metrics): not public
	data   string
	// saas are the SendGrid, FCM and Google OAuth fakes notifications sends to.
	saas *saasfake.Fakes
}

// startMesh starts everything and waits until the api reports ready.
// extraEnv applies to both processes (e.g. faster breaker settings).
func startMesh(t testing.TB, extraEnv ...string) *mesh {
	t.Helper()
	agent := meshtest.Consul(t)
	return startMeshOn(t, agent, agent.Addr, extraEnv...)
}

// startMeshOn is startMesh on a given agent, which the processes reach at
// consulAddr (the agent's own address, or a proxy in front of it).
func startMeshOn(t testing.TB, agent *meshtest.Agent, consulAddr string, extraEnv ...string) *mesh {
	t.Helper()
	data := t.TempDir()
	apiAddr := meshtest.FreeAddr(t)
	apiOpsAddr := meshtest.FreeAddr(t)
	saas := saasfake.New(t)
	common := append([]string{
		"MARKETMESH_CONFIG=" + repoFile(t, "config/local.yaml"),
		"MARKETMESH_DATA_DIR=" + data,
		"CONSUL_HTTP_ADDR=" + consulAddr,
		"MARKETMESH_CHECK_INTERVAL=1s",
		"MARKETMESH_LOG_LEVEL=warn",
		"USERS_ADDRESS=127.0.0.1:0",
		"USERS_OPS_ADDRESS=127.0.0.1:0",
		"PRODUCTS_ADDRESS=127.0.0.1:0",
		"PRODUCTS_OPS_ADDRESS=127.0.0.1:0",
		"PRODUCTS_VIEW_FLUSH=200ms",
		"PUBLICATIONS_ADDRESS=127.0.0.1:0",
		"PUBLICATIONS_OPS_ADDRESS=127.0.0.1:0",
		"IMAGES_ADDRESS=127.0.0.1:0",
		"IMAGES_OPS_ADDRESS=127.0.0.1:0",
		"IMAGES_HTTP_ADDRESS=127.0.0.1:0",
		"ORDERS_ADDRESS=127.0.0.1:0",
		"ORDERS_OPS_ADDRESS=127.0.0.1:0",
		"ORDERS_RECOVER_EVERY=1s",
		"PAYMENTS_WEBHOOK_URL=http://" + apiAddr + "/v1/payments/webhook",
		"PAYMENTS_CONFIRM_AFTER=500ms",
		"NOTIFICATIONS_ADDRESS=127.0.0.1:0",
		"NOTIFICATIONS_OPS_ADDRESS=127.0.0.1:0",
		"NOTIFICATIONS_SENDGRID_API_KEY=" + saasfake.DefaultSendGridKey,
		"NOTIFICATIONS_SENDGRID_ENDPOINT=" + saas.SendGrid.URL,
		"NOTIFICATIONS_FCM_CREDENTIALS_FILE=" + saas.CredentialsFile,
		"NOTIFICATIONS_FCM_ENDPOINT=" + saas.FCM.Endpoint(),
		"NOTIFICATIONS_RETRY_BASE=200ms",
		"NOTIFICATIONS_RETRY_MAX=2s",
		"API_ADDRESS=" + apiAddr,
		"API_OPS_ADDRESS=" + apiOpsAddr,
		"API_DRAIN_DELAY=100ms",
		"MARKETMESH_DRAIN_DELAY=100ms",
		// Race-built binaries on a busy 2-core machine: give optional parts
		// room, so only a part that is really down is reported missing.
		"API_PART_TIMEOUT=1s",
		// Tests log in often; the limiter has a test of its own.
		"API_LOGIN_PER_MINUTE_IP=100000",
		"API_LOGIN_PER_MINUTE_EMAIL=100000",
		"API_LOGIN_FAILURES_PER_HOUR_ACCOUNT=100000",
		"API_REGISTER_PER_HOUR_IP=100000",
	}, extraEnv...)
	m := &mesh{
		t: t, consul: agent, data: data, url: "http://" + apiAddr, opsURL: "http://" + apiOpsAddr, saas: saas,
		procs: map[string]*proc{},
		api:   &proc{t: t, name: "api", env: common},
	}
	for _, s := range services {
		m.procs[s] = &proc{t: t, name: s, env: common}
	}
	m.users = m.procs["users"]
	t.Cleanup(func() {
		m.api.stop()
		for _, s := range services {
			m.procs[s].resume()
			m.procs[s].stop()
		}
		if t.Failed() {
			for _, s := range services {
				t.Logf("%s log:\n%s", s, m.procs[s].log.String())
			}
			t.Logf("api log:\n%s", m.api.log.String())
		}
	})
	for _, s := range services {
		m.procs[s].start()
	}
	m.api.start()
	for _, s := range services {
		m.consul.WaitPassing(t, "marketmesh."+s, 1, 30*time.Second) // a loaded 2-core CI machine syncs checks slowly
	}
	// Readiness is on the api's ops listener, not the public port; probed
	// with a client of its own, outside the OpenAPI recorder.
	opsProbe := &http.Client{Timeout: 2 * time.Second}
	meshtest.Eventually(t, 10*time.Second, func() error {
		resp, err := opsProbe.Get(m.opsURL + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answered %d", resp.StatusCode)
		}
		return nil
	})
	return m
}

func repoFile(t testing.TB, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// call sends a JSON request and decodes a JSON answer (nil if none).
func (m *mesh) call(method, path, token string, body any) (int, map[string]any, http.Header) {
	m.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			m.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, m.url+path, rd)
	if err != nil {
		m.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out); err != nil {
			m.t.Fatalf("%s %s: answer is not a JSON object: %v: %s", method, path, err, raw)
		}
	}
	return resp.StatusCode, out, resp.Header
}

// must is call that fails the test unless the status is want.
func (m *mesh) must(want int, method, path, token string, body any) map[string]any {
	m.t.Helper()
	st, out, _ := m.call(method, path, token, body)
	if st != want {
		m.t.Fatalf("%s %s: status %d, want %d: %v", method, path, st, want, out)
	}
	return out
}

// signup registers a user and logs in, returning the user ID and a token.
//
// It is setup, not what a test checks: a register or login that meets a
// 503 (a race-built users hashing a password on a busy machine can take
// longer than a test's short RPC timeout) is tried again, for up to 30 s. A
// register that timed out may have created the account: a 409 after a 503
// means it did, and the login says which ID.
func (m *mesh) signup(email string) (string, string) {
	m.t.Helper()
	creds := map[string]string{"email": email, "password": "correct horse"}
	retried := false
	meshtest.Eventually(m.t, 30*time.Second, func() error {
		st, body, _ := m.call("POST", "/v1/auth/register", "", map[string]string{"email": email, "password": "correct horse", "name": "User " + email})
		switch {
		case st == 201 || (st == 409 && retried):
			return nil
		case st == 503:
			retried = true
			return fmt.Errorf("register %s: 503 %v", email, body)
		}
		m.t.Fatalf("POST /v1/auth/register %s: %d %v, want 201", email, st, body)
		return nil
	})
	var login map[string]any
	meshtest.Eventually(m.t, 30*time.Second, func() error {
		st, body, _ := m.call("POST", "/v1/auth/login", "", creds)
		switch st {
		case 200:
			login = body
			return nil
		case 503:
			return fmt.Errorf("login %s: 503 %v", email, body)
		}
		m.t.Fatalf("POST /v1/auth/login %s: %d %v, want 200", email, st, body)
		return nil
	})
	u, _ := login["user"].(map[string]any)
	id, _ := u["id"].(string)
	token, _ := login["token"].(string)
	if id == "" || token == "" {
		m.t.Fatalf("login %s answered no user ID or token: %v", email, login)
	}
	return id, token
}

// errorCode checks the error shape and returns its code.
func errorCode(t testing.TB, body map[string]any, hdr http.Header) string {
	t.Helper()
	e, ok := body["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %v", body)
	}
	code, _ := e["code"].(string)
	msg, _ := e["message"].(string)
	rid, _ := e["request_id"].(string)
	if code == "" || msg == "" || rid == "" {
		t.Fatalf("error shape incomplete: %v", e)
	}
	if hdr != nil && hdr.Get("X-Request-Id") != rid {
		t.Fatalf("X-Request-Id %q differs from error request_id %q", hdr.Get("X-Request-Id"), rid)
	}
	return code
}
