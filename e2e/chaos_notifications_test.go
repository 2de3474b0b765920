package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The notifications audit of `make chaos`: every notification due during
// the run reached the SendGrid and FCM fakes exactly once, whatever the
// faults, or — only for a delivery in flight when notifications itself was
// killed — at most twice (the documented window between the provider's
// acceptance and the record; see services/notifications/internal/sender).

// notificationsQueued reads marketmesh_notifications_queued from the
// passing notifications instance.
func notificationsQueued(m *mesh) (float64, error) {
	lines, err := notificationsMetrics(m)
	if err != nil {
		return 0, err
	}
	if v, ok := sumSamples(lines, "marketmesh_notifications_queued "); ok {
		return v, nil
	}
	return 0, fmt.Errorf("notifications /metrics: no marketmesh_notifications_queued")
}

// notificationsMetrics reads the sample lines of the passing notifications
// instance's /metrics.
func notificationsMetrics(m *mesh) ([]string, error) {
	resp, err := opsGet(m, "marketmesh.notifications", "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line := sc.Text(); !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	return lines, sc.Err()
}

// sumSamples sums the samples whose line starts with prefix (a name, or a
// name and the start of its labels) and contains every one of also; ok is
// false when no line matched.
func sumSamples(lines []string, prefix string, also ...string) (sum float64, ok bool) {
next:
	for _, line := range lines {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		for _, a := range also {
			if !strings.Contains(line, a) {
				continue next
			}
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum, ok = sum+v, true
		}
	}
	return sum, ok
}

// drainNotifications waits (bounded) until notifications has nothing
// queued, twice in a row, after the relays caught up.
func drainNotifications(t *testing.T, m *mesh) time.Duration {
	t.Helper()
	start := time.Now()
	zeros := 0
	err := poll(90*time.Second, func() error {
		n, err := notificationsQueued(m)
		if err != nil || n != 0 {
			zeros = 0
			return fmt.Errorf("queued %v (%v)", n, err)
		}
		if zeros++; zeros < 2 {
			return fmt.Errorf("queued 0 once")
		}
		return nil
	})
	if err != nil {
		t.Errorf("notifications did not drain: %v", err)
	}
	return time.Since(start)
}

// storedDelivery is what the audit reads of a delivery record.
type storedDelivery struct {
	ID       string `json:"id"`
	Topic    string `json:"topic"`
	Channel  string `json:"channel"`
	Template string `json:"template"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Targets  []struct {
		Token  string `json:"token"`
		Status string `json:"status"`
	} `json:"targets"`
	LastError string `json:"last_error"`
}

// checkNotifications audits, from the stopped mesh's files and the fakes,
// that every delivery notifications recorded went out exactly once. kills
// is how many times notifications was killed with kill -9 during the run.
func checkNotifications(t *testing.T, m *mesh, drained time.Duration, kills int) {
	t.Helper()
	var ds []storedDelivery
	err := readBolt(filepath.Join(m.data, "notifications", "notifications.db"), func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("deliveries"))
		if b == nil {
			return fmt.Errorf("no deliveries bucket")
		}
		return b.ForEach(func(_, v []byte) error {
			var d storedDelivery
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			ds = append(ds, d)
			return nil
		})
	})
	if err != nil {
		t.Fatalf("notifications database: %v", err)
	}
	emails := map[string]int{} // delivery ID → messages at the SendGrid fake
	for _, mail := range m.saas.SendGrid.Messages() {
		emails[mail.CustomArgs["delivery_id"]]++
	}
	pushes := map[string]int{} // delivery ID + token → messages at the FCM fake
	for _, p := range m.saas.FCM.Messages() {
		pushes[p.Data["delivery_id"]+" "+p.Token]++
	}

	byStatus := map[string]int{}
	byTemplate := map[string]int{}
	var problems, repeats []string
	recorded := map[string]bool{}
	for _, d := range ds {
		byStatus[d.Channel+" "+d.Status]++
		byTemplate[d.Template]++
		switch d.Channel {
		case "email":
			recorded[d.ID] = true
			n := emails[d.ID]
			switch {
			case d.Status == "sent" && n == 1, d.Status == "skipped" && n == 0:
			case d.Status == "sent" && n == 2:
				repeats = append(repeats, d.ID)
			default:
				problems = append(problems, fmt.Sprintf("email %s (%s, %s, %d attempts, %q): %d messages at SendGrid", d.ID, d.Template, d.Status, d.Attempts, d.LastError, n))
			}
		case "push":
			for _, tg := range d.Targets {
				recorded[d.ID+" "+tg.Token] = true
				n := pushes[d.ID+" "+tg.Token]
				switch {
				case tg.Status == "sent" && n == 1:
				case tg.Status == "sent" && n == 2:
					repeats = append(repeats, d.ID+" "+tg.Token)
				default:
					problems = append(problems, fmt.Sprintf("push %s to %s (%s): %d messages at FCM", d.ID, tg.Token, tg.Status, n))
				}
			}
			if d.Status != "sent" && d.Status != "skipped" {
				problems = append(problems, fmt.Sprintf("push %s (%s) is %s: %q", d.ID, d.Template, d.Status, d.LastError))
			}
		default:
			problems = append(problems, fmt.Sprintf("dead letter %s (%s): %s", d.ID, d.Topic, d.LastError))
		}
	}
	for id, n := range emails {
		if !recorded[id] {
			problems = append(problems, fmt.Sprintf("%d emails at SendGrid with delivery ID %q that notifications never recorded", n, id))
		}
	}
	for k, n := range pushes {
		if !recorded[k] {
			problems = append(problems, fmt.Sprintf("%d pushes at FCM for %q that notifications never recorded", n, k))
		}
	}
	// At most one message per worker may repeat per kill -9 of notifications.
	const workers = 8
	if len(repeats) > kills*workers {
		problems = append(problems, fmt.Sprintf("%d messages sent twice, more than the %d kill -9 window allows: %v", len(repeats), kills*workers, repeats))
	}

	statuses := make([]string, 0, len(byStatus))
	for k, n := range byStatus {
		statuses = append(statuses, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(statuses)
	templates := make([]string, 0, len(byTemplate))
	for k, n := range byTemplate {
		templates = append(templates, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(templates)
	report(t, "notifications: drained %s after the relays caught up; %d deliveries (%s); by template: %s",
		fmtDur(drained), len(ds), strings.Join(statuses, " "), strings.Join(templates, " "))
	report(t, "notifications at the fakes: %d emails, %d pushes; sent twice in the kill -9 window: %d (allowed %d); problems: %d",
		len(m.saas.SendGrid.Messages()), len(m.saas.FCM.Messages()), len(repeats), kills*workers, len(problems))
	for _, p := range problems {
		t.Errorf("notifications: %s", p)
	}
	if byTemplate["welcome"] == 0 || byTemplate["order_paid_buyer"] == 0 {
		t.Errorf("notifications: the run produced no welcome or receipt deliveries (%v): nothing was checked", byTemplate)
	}
}
