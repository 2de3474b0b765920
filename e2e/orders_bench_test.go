package e2e

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkCheckout measures POST /v1/orders end to end with 32 concurrent
// buyers (tok_visa, one unit each): HTTP into the api, the orders saga
// (reserve stock in publications, charge the sandbox, commit), back. It sets
// the throughput against the disk's bbolt fsync rate, since each order
// commits several bbolt transactions in two services.
func BenchmarkCheckout(b *testing.B) {
	const buyers = 32
	m := startMesh(b, "MARKETMESH_LOG_LEVEL=error")
	_, sToken := m.signup("bench-orders-seller@example.com")
	pub := m.seedPublication(sToken, "Bench widget", 199, "USD", 1_000_000)
	tokens := make([]string, buyers)
	for i := range tokens {
		_, tokens[i] = m.signup(fmt.Sprintf("bench-orders-buyer-%d@example.com", i))
	}
	fsyncs := boltCommitsPerSecond(b, time.Second)
	body := orderBody(pub, 1, "tok_visa")

	b.Run("32 buyers", func(b *testing.B) {
		var next atomic.Int64
		var paid atomic.Int64
		lat := make([][]time.Duration, buyers)
		var firstErr atomic.Value
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for w := range buyers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					a := m.placeOrder(tokens[w], body, "")
					lat[w] = append(lat[w], a.took)
					if a.status == 201 && a.body["status"] == "paid" {
						paid.Add(1)
					} else {
						firstErr.CompareAndSwap(nil, a.String())
					}
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		if e := firstErr.Load(); e != nil {
			b.Fatalf("an order was not paid: %v", e)
		}
		all := slices.Concat(lat...)
		slices.Sort(all)
		pct := func(q float64) time.Duration { return all[min(len(all)-1, int(q*float64(len(all))))] }
		ordersPerSec := float64(paid.Load()) / elapsed.Seconds()
		b.ReportMetric(ordersPerSec, "orders/s")
		b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
		b.ReportMetric(fsyncs, "fsync-commits/s")
		b.ReportMetric(ordersPerSec/fsyncs, "orders-per-fsync")
		b.ReportMetric(0, "ns/op")
		b.Logf("checkout: %d paid orders in %v with %d buyers: %.1f orders/s, p50 %v, p99 %v; bbolt fsync commits %.0f/s on this disk; orders/s ÷ fsync commits/s = %.3f",
			paid.Load(), elapsed.Round(time.Millisecond), buyers, ordersPerSec, pct(0.50).Round(100*time.Microsecond),
			pct(0.99).Round(100*time.Microsecond), fsyncs, ordersPerSec/fsyncs)
	})
}

// boltCommitsPerSecond commits small single-key bbolt transactions (each
// one fsync) in a fresh file for about d and returns the rate.
func boltCommitsPerSecond(b testing.TB, d time.Duration) float64 {
	b.Helper()
	db, err := bolt.Open(filepath.Join(b.TempDir(), "fsync.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	key := make([]byte, 8)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		binary.BigEndian.PutUint64(key, uint64(n))
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("bench"))
			if err != nil {
				return err
			}
			return bk.Put(key, []byte("a small value of about forty bytes......"))
		})
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}
