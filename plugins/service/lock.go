package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	consul "github.com/hashicorp/consul/api"
	bolt "go.etcd.io/bbolt"

	"github.com/marketmesh/marketmesh/plugins/boltdb"
	"github.com/marketmesh/marketmesh/plugins/config"
)

// LockPrefix is the Consul KV folder of the single-instance locks: one key
// per stateful service, e.g. marketmesh/locks/marketmesh.users.
const LockPrefix = "marketmesh/locks/"

// Lock timing: the session's TTL (Consul may keep an expired session up to
// twice as long), how often the holder renews it, and the longest pause
// between attempts while Consul is down. A takeover on the same data never
// waits for the TTL (see Exclusive), so the TTL only bounds how long a dead
// holder's session lingers. The holder learns of a change to its key from a
// blocking query, at once, so it renews rarely: every renewal is a Consul
// request from every stateful service, all day (README "Performance").
const (
	lockTTL      = 90 * time.Second
	lockRenew    = 30 * time.Second
	lockMaxRetry = 5 * time.Second
	lockRemind   = time.Minute // a waiting instance repeats why it waits
	lockWatch    = 5 * time.Minute
)

// errLockLost ends Run: another process holds the lock now.
var errLockLost = errors.New("lost the single-instance lock")

// Exclusive makes the service a single instance: until data is replicated,
// each stateful service keeps its data in one bbolt file, so two instances
// would serve two different data sets (reads retried on another node, an
// event relayed to one of them). Before registering, Run takes a Consul lock
// (a session holding LockPrefix+name) whose value names the data set of db
// (boltdb.Dataset); meanwhile the instance serves /healthz, answers /readyz
// with why it waits, and is not in the registry.
//
//   - A newcomer whose file has another data set (a second instance with its
//     own empty database) never takes the lock, even after the holder died:
//     the key keeps naming the data the service serves. It waits, and says so.
//   - A process that opens the same data takes the lock over from a holder
//     whose session is still alive: it holds the file's bbolt lock, so on
//     this host the previous process is gone (a kill -9, or blue/green on the
//     same volume, which bbolt's file lock serializes). Copying the file to a
//     second host and running both is not supported.
//   - The holder renews its session; if Consul forgot it (a dev agent
//     restarted) it takes the lock again; if another process now holds it,
//     Run stops with an error rather than serve beside it.
//
// Call before Run. To let other data serve the service for good (the old
// data was abandoned on purpose), delete the key: consul kv delete <key>.
func (s *Service) Exclusive(db *bolt.DB) error {
	dataset, err := boltdb.Dataset(db)
	if err != nil {
		return fmt.Errorf("%s: single-instance lock: %w", s.name, err)
	}
	client, err := config.ConsulClient(s.opts.Mesh.Consul)
	if err != nil {
		return fmt.Errorf("%s: single-instance lock: %w", s.name, err)
	}
	host, _ := os.Hostname()
	s.lock = &serviceLock{
		client: client,
		name:   s.name,
		key:    LockPrefix + s.name,
		me:     lockHolder{Dataset: dataset, Instance: s.health.instance, Host: host, PID: os.Getpid()},
	}
	s.health.Add("single_instance", s.lock.check)
	return nil
}

// lockHolder is the lock key's value.
type lockHolder struct {
	Dataset  string    `json:"dataset"`
	Instance string    `json:"instance"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Since    time.Time `json:"since"`
}

type serviceLock struct {
	client  *consul.Client
	name    string
	key     string
	me      lockHolder
	session string // ours, "" until created

	mu   sync.Mutex
	held bool
	why  string // while waiting: the reason, for /readyz
}

func (l *serviceLock) check(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.held:
		return nil
	case l.why != "":
		return errors.New("waiting for the single-instance lock: " + l.why)
	}
	return errors.New("waiting for the single-instance lock")
}

func (l *serviceLock) waitingBecause(why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held, l.why = why == "", why
}

// acquire blocks until this process holds the lock or ctx ends.
func (l *serviceLock) acquire(ctx context.Context) error {
	retry := 250 * time.Millisecond
	var said string
	var saidAt time.Time
	for {
		held, why, index, err := l.try(ctx)
		if held {
			l.waitingBecause("")
			slog.Info("single-instance lock held", "key", l.key, "dataset", l.me.Dataset)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			why = "Consul unreachable: " + err.Error()
		}
		l.waitingBecause(why)
		if why != said || time.Since(saidAt) >= lockRemind {
			slog.Warn("not serving: waiting for the single-instance lock", "key", l.key, "why", why)
			said, saidAt = why, time.Now()
		}
		if index > 0 { // wait for the key to change
			q := (&consul.QueryOptions{WaitIndex: index, WaitTime: lockRemind}).WithContext(ctx)
			if _, _, err := l.client.KV().Get(l.key, q); err == nil {
				retry = 250 * time.Millisecond
				continue
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
		retry = min(2*retry, lockMaxRetry)
	}
}

// try makes one attempt. When the key names other data it returns why and
// the key's index to wait on.
func (l *serviceLock) try(ctx context.Context) (held bool, why string, index uint64, err error) {
	if l.session == "" {
		id, _, err := l.client.Session().Create(&consul.SessionEntry{
			Name:      l.name + " single instance",
			TTL:       lockTTL.String(),
			LockDelay: time.Millisecond, // Consul's default 15 s would delay a takeover
			Behavior:  consul.SessionBehaviorRelease,
		}, (&consul.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return false, "", 0, err
		}
		l.session = id
	}
	q := (&consul.QueryOptions{RequireConsistent: true}).WithContext(ctx)
	pair, meta, err := l.client.KV().Get(l.key, q)
	if err != nil {
		return false, "", 0, err
	}
	if pair != nil {
		var h lockHolder
		if json.Unmarshal(pair.Value, &h) != nil || h.Dataset == "" {
			return false, fmt.Sprintf("%s holds an unreadable value %.80q", l.key, pair.Value), meta.LastIndex, nil
		}
		if h.Dataset != l.me.Dataset {
			return false, fmt.Sprintf("the service serves data set %s (last held by %s on %s), "+
				"this instance opened data set %s: it never takes over with other data. "+
				"If that data is abandoned for good: consul kv delete %s",
				h.Dataset, h.Instance, h.Host, l.me.Dataset, l.key), meta.LastIndex, nil
		}
		if pair.Session != "" && pair.Session != l.session {
			// Same data, and this process holds the file: the holder was a
			// previous process on it, gone without releasing (kill -9).
			slog.Warn("taking over the single-instance lock from a previous process on the same data",
				"key", l.key, "previous", h.Instance, "previous_pid", h.PID, "previous_host", h.Host)
			if _, err := l.client.Session().Destroy(pair.Session, (&consul.WriteOptions{}).WithContext(ctx)); err != nil {
				return false, "", 0, err
			}
			// Destroying the session released the key and changed its index.
			if pair, _, err = l.client.KV().Get(l.key, q); err != nil {
				return false, "", 0, err
			}
		}
	}
	check := &consul.KVTxnOp{Verb: consul.KVCheckNotExists, Key: l.key}
	if pair != nil {
		check = &consul.KVTxnOp{Verb: consul.KVCheckIndex, Key: l.key, Index: pair.ModifyIndex}
	}
	me := l.me
	me.Since = time.Now().UTC()
	value, _ := json.Marshal(me)
	ops := consul.TxnOps{
		{KV: check},
		{KV: &consul.KVTxnOp{Verb: consul.KVLock, Key: l.key, Value: value, Session: l.session}},
	}
	ok, _, _, err := l.client.Txn().Txn(ops, (&consul.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return false, "", 0, err
	}
	if !ok {
		return false, "the lock changed hands while taking it; trying again", 0, nil
	}
	l.me = me
	return true, "", 0, nil
}

// hold renews the session until ctx ends, and takes the lock again if
// Consul forgot it. It returns errLockLost when another process holds it.
// The key is read when a blocking query says it changed (another holder,
// an operator's delete, the session's end releasing it, a restarted agent)
// or a renewal says the session is gone.
func (l *serviceLock) hold(ctx context.Context) error {
	t := time.NewTicker(lockRenew)
	defer t.Stop()
	changed := make(chan struct{}, 1)
	retry := make(chan struct{}, 1)
	later := func() { // look again in a moment
		time.AfterFunc(lockMaxRetry, func() {
			select {
			case retry <- struct{}{}:
			default:
			}
		})
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go l.watchKey(wctx, changed)
	for {
		keyChanged := false
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-retry:
			keyChanged = true
		case <-changed:
			keyChanged = true
			// A change seen the moment it happens may be half of one: a
			// session ended (the key released) just before whoever ended
			// it takes the key. Retaking at once would race that other
			// holder; only a key already held by another is acted on now,
			// a free one is looked at again in a moment.
			pair, _, err := l.client.KV().Get(l.key, (&consul.QueryOptions{RequireConsistent: true}).WithContext(ctx))
			if err == nil && (pair == nil || pair.Session == "") {
				later()
				continue
			}
		}
		entry, _, err := l.client.Session().Renew(l.session, (&consul.WriteOptions{}).WithContext(ctx))
		if err != nil {
			if ctx.Err() == nil {
				slog.Warn("single-instance lock: cannot renew (Consul unreachable?); still serving", "err", err)
			}
			continue
		}
		if entry != nil && !keyChanged {
			continue // the session lives, so nobody else could acquire the key
		}
		q := (&consul.QueryOptions{RequireConsistent: true}).WithContext(ctx)
		pair, _, err := l.client.KV().Get(l.key, q)
		if err != nil {
			continue
		}
		switch {
		case entry != nil && pair != nil && pair.Session == l.session:
			continue // still ours
		case pair != nil && pair.Session != "" && pair.Session != l.session:
			var h lockHolder
			_ = json.Unmarshal(pair.Value, &h)
			return fmt.Errorf("%w: %s is now held by %s on %s (pid %d); stopping rather than serving beside it",
				errLockLost, l.key, h.Instance, h.Host, h.PID)
		}
		// Our session or the key is gone (a restarted dev agent, an operator):
		// take the lock again, on the same terms as at start.
		slog.Warn("single-instance lock: Consul forgot it; taking it again", "key", l.key)
		if entry == nil {
			l.session = ""
		}
		held, why, foreign, err := l.try(ctx)
		switch {
		case err != nil:
			slog.Warn("single-instance lock: retaking failed; still serving", "err", err)
		case foreign > 0:
			return fmt.Errorf("%w: %s", errLockLost, why)
		case !held:
			slog.Warn("single-instance lock: retaking failed; will try again", "why", why)
		}
		if err != nil || !held {
			later() // look again soon, not at the next renewal
		}
	}
}

// watchKey signals changed whenever the lock's key changes, by blocking
// queries of up to lockWatch (one Consul request per change or per wait).
// After an error it starts over from index 0 and signals the next answer,
// which is how a restarted agent that forgot the lock is noticed.
func (l *serviceLock) watchKey(ctx context.Context, changed chan<- struct{}) {
	var index, last uint64
	for ctx.Err() == nil {
		q := (&consul.QueryOptions{WaitIndex: index, WaitTime: lockWatch}).WithContext(ctx)
		_, meta, err := l.client.KV().Get(l.key, q)
		if err != nil {
			index = 0
			select {
			case <-ctx.Done():
				return
			case <-time.After(lockMaxRetry):
			}
			continue
		}
		if last != 0 && meta.LastIndex != last {
			select {
			case changed <- struct{}{}:
			default:
			}
		}
		last, index = meta.LastIndex, meta.LastIndex
	}
}

// release ends the session: the key stays, naming the data set, unlocked.
func (l *serviceLock) release() {
	if l.session == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := l.client.Session().Destroy(l.session, (&consul.WriteOptions{}).WithContext(ctx)); err != nil {
		slog.Warn("single-instance lock: release", "err", err)
	}
}
