package handler_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/services/images/internal/budget"
	"github.com/marketmesh/marketmesh/services/images/internal/handler"
	"github.com/marketmesh/marketmesh/services/images/internal/imagetest"
)

// BenchmarkUpload5MiB uploads a ~5 MiB image over a real (loopback) HTTP
// connection: stream to disk while hashing, sniff, header check, full
// decode, 256 px thumbnail, fsync, content-addressed placement, bbolt commit.
// The same bytes every time: after the first, the original is a duplicate
// (the temp file is dropped instead of renamed), which costs the same.
func BenchmarkUpload5MiB(b *testing.B) {
	cases := []struct {
		name string
		data func(testing.TB) []byte
	}{
		// Random pixels do not compress: 1320x1320x3 ≈ 5.0 MiB of PNG.
		{"noisy-png-1320x1320", func(t testing.TB) []byte { return imagetest.NoisyPNG(t, 1320, 1320) }},
		// Quality 95 noise: ~5 MiB of JPEG at 2200x2200.
		{"noisy-jpeg-2200x2200", func(t testing.TB) []byte { return imagetest.NoisyJPEG(t, 2200, 2200) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			data := c.data(b)
			f := newFixture(b)
			srv := httptest.NewServer(f.http)
			defer srv.Close()
			client := srv.Client()
			target := srv.URL + uploadURL("product", "bench", "u1")
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				resp, err := client.Post(target, "application/octet-stream", bytes.NewReader(data))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			b.ReportMetric(float64(len(data))/(1<<20), "MiB/file")
		})
	}
}

// BenchmarkConcurrentUploads sends 8 uploads at once over real connections
// to the endpoint with the default limits, and reports the memory it took:
// the heap's growth (live and unswept objects) and the process's resident
// set at its peak (sampled every half millisecond) and once the burst is
// over. The memory policy is main's: a soft limit of the decode memory plus
// 64 MiB (unless GOMEMLIMIT is set), and memory given back a second after
// a burst.
//
//	issue-bombs: the issue's 6324×6324 16-bit PNG (305 MiB of pixels), refused
//	max-size: 16-bit 3600×3600 PNGs needing 125 MiB each, just under the
//	          default 128 MiB: two decode at a time, the others wait
func BenchmarkConcurrentUploads(b *testing.B) {
	cases := []struct {
		name   string
		data   func(testing.TB) []byte
		status int
	}{
		{"issue-bombs", issueBomb, http.StatusUnprocessableEntity},
		{"max-size", func(t testing.TB) []byte { return imagetest.ZeroPNG(t, 3600, 3600, 16, 6, false) }, http.StatusCreated},
	}
	if os.Getenv("GOMEMLIMIT") == "" { // as main does
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(handler.DefaultDecodeMemory + 64<<20))
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			data := c.data(b)
			decoding := budget.New(handler.DefaultDecodeMemory, handler.DefaultDecodeWait)
			decoding.WhenIdle(time.Second, 64<<20, debug.FreeOSMemory) // as main does
			f := newFixture(b).withDecoding(0, decoding)
			srv := httptest.NewServer(f.http)
			defer srv.Close()
			heap := sampleHeap()
			rss := sampleRSS()
			start := time.Now()
			for b.Loop() {
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						if got := postOver(context.Background(), b, srv, data); got.status != c.status {
							b.Errorf("status %d (%s), want %d", got.status, got.message, c.status)
						}
					})
				}
				wg.Wait()
			}
			elapsed := time.Since(start)
			heap.stop()
			rss.stop()
			time.Sleep(1500 * time.Millisecond) // the budget's quiet second, and the give-back
			b.ReportMetric(float64(len(data))/1e3, "KB/file")
			b.ReportMetric(float64(elapsed.Milliseconds())/float64(b.N), "ms/8-uploads")
			b.ReportMetric(float64(heap.growth())/(1<<20), "MiB-heap-peak-growth")
			if rss.peak > 0 {
				b.ReportMetric(float64(rss.base)/(1<<20), "MiB-RSS-before")
				b.ReportMetric(float64(rss.peak)/(1<<20), "MiB-RSS-peak")
				b.ReportMetric(float64(residentBytes())/(1<<20), "MiB-RSS-after")
			}
		})
	}
}

// rssSampler records the process's peak resident set (Linux) until stopped.
type rssSampler struct {
	base, peak int64
	stop       func()
}

func sampleRSS() *rssSampler {
	r := &rssSampler{base: residentBytes()}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			r.peak = max(r.peak, residentBytes())
			select {
			case <-done:
				return
			case <-time.After(500 * time.Microsecond):
			}
		}
	})
	r.stop = func() { close(done); wg.Wait() }
	return r
}

// residentBytes is the resident set from /proc/self/statm, 0 elsewhere.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(fields[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
