package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Helpers of TestChaos: a load client that records every answer, the
// acknowledged writes, a Consul agent restart and the sandbox ledger.

// chaosClient bounds every load request: a hung part of the mesh must show
// up as an error, never stall a worker for the whole run.
var chaosClient = &http.Client{Timeout: 20 * time.Second}

// obs is one answer the load got.
type obs struct {
	route      string
	start, end time.Time
	status     int // 0: transport error
	code       string
	body       string // for unexpected 5xx only
}

func (o obs) took() time.Duration { return o.end.Sub(o.start) }

// ackOrder is a paid order the api acknowledged (201).
type ackOrder struct {
	id, pub, key string
	buyer        int
	quantity     int64
}

// chaosLog records the load's answers and its acknowledged writes.
type chaosLog struct {
	mu       sync.Mutex
	obs      []obs
	users    []string // emails
	products []string
	pubs     []string
	images   []string
	deleted  []string // products whose DELETE was acknowledged (not in products)
	orders   []ackOrder
	keys     []map[string]bool // Idempotency-Keys used per buyer
}

func (l *chaosLog) add(o obs) {
	l.mu.Lock()
	l.obs = append(l.obs, o)
	l.mu.Unlock()
}

// do sends req, records the answer under route and returns it.
func (l *chaosLog) do(route string, req *http.Request) answer {
	start := time.Now()
	out := doRequest(chaosClient, req)
	end := start.Add(out.took)
	if out.status == 0 {
		l.add(obs{route: route, start: start, end: end, status: 0, body: string(out.raw)})
		return out
	}
	o := obs{route: route, start: start, end: end, status: out.status, code: out.errCode()}
	if out.status >= 500 && out.status != 503 {
		o.body = string(out.raw)
	}
	l.add(o)
	return out
}

// uploadReq builds a multipart image upload for a product.
func uploadReq(m *mesh, token, productID string, file []byte) *http.Request {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("owner_type", "product")
	_ = mw.WriteField("owner_id", productID)
	// The part says what it is (CreateFormFile would say application/octet-stream).
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="chaos.png"`)
	h.Set("Content-Type", "image/png")
	fw, _ := mw.CreatePart(h)
	_, _ = fw.Write(file)
	_ = mw.Close()
	req, err := http.NewRequest("POST", m.url+"/v1/images", &body)
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

// faultRun is one injected fault and what the load saw of it.
type faultRun struct {
	name      string
	routes    []string // the affected routes; nil: every route
	skipped   string   // why the fault was not injected
	at        time.Time
	restarted time.Time // restart (or SIGCONT) issued
	until     time.Time // the window ends: the next fault, or the end of the load
}

func (f *faultRun) affects(route string) bool {
	return f.routes == nil || slices.Contains(f.routes, route)
}

// faultStats summarises the answers of one fault's window.
type faultStats struct {
	ok, c4xx, c503, c5xx, transport int
	firstFast503                    time.Duration // -1: none
	p99of503                        time.Duration // -1: none
	recovery                        time.Duration // -1: none
}

// fast503 is the latency under which a 503 counts as failing fast.
const fast503 = 250 * time.Millisecond

func (f *faultRun) stats(all []obs) faultStats {
	s := faultStats{firstFast503: -1, p99of503: -1, recovery: -1}
	var lat503 []time.Duration
	for _, o := range all {
		if o.end.Before(f.at) || !o.end.Before(f.until) {
			continue
		}
		switch {
		case o.status == 0:
			s.transport++
		case o.status == 503:
			s.c503++
		case o.status >= 500:
			s.c5xx++
		case o.status >= 400:
			s.c4xx++
		default:
			s.ok++
		}
		if !f.affects(o.route) {
			continue
		}
		if o.status == 503 {
			lat503 = append(lat503, o.took())
			if o.took() <= fast503 && (s.firstFast503 < 0 || o.end.Sub(f.at) < s.firstFast503) {
				s.firstFast503 = o.end.Sub(f.at)
			}
		}
		if o.status/100 == 2 && !o.start.Before(f.restarted) {
			if d := o.end.Sub(f.restarted); s.recovery < 0 || d < s.recovery {
				s.recovery = d
			}
		}
	}
	if len(lat503) > 0 {
		sort.Slice(lat503, func(i, j int) bool { return lat503[i] < lat503[j] })
		i := (len(lat503)*99+99)/100 - 1
		s.p99of503 = lat503[min(i, len(lat503)-1)]
	}
	return s
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// consulProc is the Consul agent of a mesh, found as a child process of the
// test so that it can be restarted with the same configuration file: the
// same ports and the same data directory. meshtest.Agent does not expose its
// process, so restartConsul finds it by its HTTP port.
type consulProc struct {
	pid  int // the agent meshtest started, until it is restarted
	args []string
	cmd  *exec.Cmd // the agent started by restart
	log  safeBuffer
}

// findConsul returns the test's child consul process serving httpAddr.
func findConsul(httpAddr string) (*consulProc, error) {
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) < 2 || filepath.Base(args[0]) != "consul" || args[1] != "agent" {
			continue
		}
		cfgFile := ""
		for j, a := range args {
			if a == "-config-file" && j+1 < len(args) {
				cfgFile = args[j+1]
			}
		}
		var cfg struct {
			Ports struct {
				HTTP int `json:"http"`
			} `json:"ports"`
		}
		if raw, err := os.ReadFile(cfgFile); err != nil || json.Unmarshal(raw, &cfg) != nil || strconv.Itoa(cfg.Ports.HTTP) != port {
			continue
		}
		return &consulProc{pid: pid, args: args}, nil
	}
	return nil, fmt.Errorf("no consul child process serves %s", httpAddr)
}

// gone reports whether pid has exited (a zombie counts).
func gone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X'
}

// stop sends SIGTERM to the running agent and waits until it has exited.
func (c *consulProc) stop() error {
	if c.cmd != nil {
		cmd := c.cmd
		c.cmd = nil
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
			return nil
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("consul did not exit within 15 s of SIGTERM")
		}
	}
	// meshtest's agent: its owner reaps it when the test ends.
	if err := syscall.Kill(c.pid, syscall.SIGTERM); err != nil {
		return err
	}
	for deadline := time.Now().Add(15 * time.Second); !gone(c.pid); {
		if time.Now().After(deadline) {
			return fmt.Errorf("consul %d did not exit within 15 s of SIGTERM", c.pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// start starts an agent with the first one's command line.
func (c *consulProc) start() error {
	path, err := exec.LookPath(c.args[0])
	if err != nil {
		return err
	}
	cmd := exec.Command(path, c.args[1:]...)
	cmd.Stdout, cmd.Stderr = &c.log, &c.log
	if err := cmd.Start(); err != nil {
		return err
	}
	c.cmd = cmd
	return nil
}

// sandboxCharge is a charge in the orders service's sandbox ledger.
type sandboxCharge struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	OrderID  string `json:"order_id"`
	Refunded bool   `json:"refunded"`
}

// readLedger reads the sandbox ledger from the (stopped) orders database.
func readLedger(path string) (map[string][]sandboxCharge, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	charges := map[string][]sandboxCharge{}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("sandbox.charges"))
		if b == nil {
			return fmt.Errorf("no sandbox.charges bucket")
		}
		return b.ForEach(func(_, v []byte) error {
			var c sandboxCharge
			if err := json.Unmarshal(v, &c); err != nil {
				return err
			}
			charges[c.OrderID] = append(charges[c.OrderID], c)
			return nil
		})
	})
	return charges, err
}

// allOrders reads every page of a buyer's orders, or says why it could not.
func allOrders(m *mesh, token string) ([]map[string]any, error) {
	var out []map[string]any
	pageToken := ""
	for range 200 {
		path := "/v1/orders?page_size=100"
		if pageToken != "" {
			path += "&page_token=" + pageToken
		}
		a := m.send("GET", path, token, nil, nil)
		if a.status != 200 {
			return nil, fmt.Errorf("GET %s: %s", path, a)
		}
		items, ok := a.body["items"].([]any)
		if !ok {
			return nil, fmt.Errorf("GET %s: no items list: %s", path, a)
		}
		for _, it := range items {
			if o, ok := it.(map[string]any); ok {
				out = append(out, o)
			}
		}
		pageToken, _ = a.body["next_page_token"].(string)
		if pageToken == "" {
			return out, nil
		}
	}
	return nil, fmt.Errorf("GET /v1/orders: more than 200 pages")
}

// poll calls cond every 100 ms until it returns nil or timeout passes, and
// returns its last error (nil if it was met).
func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// paidLike reports whether an order status means the buyer paid and kept it.
func paidLike(status string) bool {
	return status == "paid" || status == "shipped" || status == "delivered"
}

// chaosDuration is CHAOS_DURATION (default 60 s).
func chaosDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("CHAOS_DURATION")
	if v == "" {
		return 60 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("CHAOS_DURATION=%q: want a positive Go duration such as 60s", v)
	}
	return d
}
