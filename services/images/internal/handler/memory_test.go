package handler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/apierror"
	"github.com/marketmesh/marketmesh/services/images/internal/budget"
	"github.com/marketmesh/marketmesh/services/images/internal/handler"
	"github.com/marketmesh/marketmesh/services/images/internal/image"
	"github.com/marketmesh/marketmesh/services/images/internal/imagetest"
	"github.com/marketmesh/marketmesh/services/images/internal/thumbnail"
)

// issueBomb is the file of the trust-boundaries issue: a 6324×6324 16-bit
// RGBA PNG of zeros, a third of a megabyte that decodes to 305 MiB and
// passes the 10 MiB, 10,000 px and 40 MP checks.
func issueBomb(t testing.TB) []byte { return imagetest.ZeroPNG(t, 6324, 6324, 16, 6, false) }

// withDecoding replaces f's blob endpoint by one with these decode limits.
func (f *fixture) withDecoding(maxDecodeBytes int64, decoding *budget.Budget) *fixture {
	f.http = handler.NewHTTP(f.store, handler.HTTPOptions{MaxDecodeBytes: maxDecodeBytes, Decoding: decoding})
	return f
}

// need is what an upload of data reserves: its decode and its thumbnail.
func need(t testing.TB, data []byte, contentType string) int64 {
	t.Helper()
	hdr, err := image.ReadHeader(bytes.NewReader(data), contentType)
	if err != nil {
		t.Fatal(err)
	}
	return hdr.DecodeBytes + thumbnail.Scratch(hdr.Width, hdr.Height)
}

type answer struct {
	status     int
	retryAfter string
	message    string
}

// postOver uploads data over a real connection.
func postOver(ctx context.Context, t testing.TB, srv *httptest.Server, data []byte) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+uploadURL("product", "p1", "u1"), bytes.NewReader(data))
	if err != nil {
		t.Error(err)
		return answer{}
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Error(err)
		return answer{}
	}
	defer resp.Body.Close()
	var body apierror.Body
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &body)
	return answer{resp.StatusCode, resp.Header.Get("Retry-After"), body.Error.Message}
}

// heapSampler records the most bytes of live and unswept heap objects
// (runtime/metrics, which does not stop the world) until stopped.
type heapSampler struct {
	base, peak uint64
	stop       func()
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func sampleHeap() *heapSampler {
	runtime.GC()
	h := &heapSampler{base: heapObjects()}
	h.peak = h.base
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			h.peak = max(h.peak, heapObjects())
			time.Sleep(500 * time.Microsecond)
		}
	})
	h.stop = func() { cancel(); wg.Wait() }
	return h
}

// growth is the peak over the base, in bytes.
func (h *heapSampler) growth() int64 { return int64(h.peak) - int64(h.base) }

func TestTheIssuesBombIsRefusedBeforeAnyPixelIsDecoded(t *testing.T) {
	f := newFixture(t) // the default limits
	srv := httptest.NewServer(f.http)
	defer srv.Close()
	bomb := issueBomb(t)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	got := postOver(context.Background(), t, srv, bomb)
	took := time.Since(start)
	runtime.ReadMemStats(&after)

	if got.status != http.StatusUnprocessableEntity {
		t.Fatalf("status = %d (%s), want 422", got.status, got.message)
	}
	for _, want := range []string{"6324x6324", "16-bit RGBA", "128 MiB one image may use"} {
		if !strings.Contains(got.message, want) {
			t.Errorf("message %q does not say %q", got.message, want)
		}
	}
	if took > 2*time.Second {
		t.Errorf("refusing the bomb took %v", took)
	}
	// Decoding would allocate 305 MiB; the refusal, client and server
	// together, is the upload's buffers.
	alloc, heap := after.TotalAlloc-before.TotalAlloc, int64(after.HeapAlloc)-int64(before.HeapAlloc)
	t.Logf("%d byte bomb refused in %v: %.1f MiB allocated, heap %+.1f MiB", len(bomb), took, float64(alloc)/(1<<20), float64(heap)/(1<<20))
	if alloc > 8<<20 || heap > 8<<20 {
		t.Errorf("refusing the bomb allocated %d bytes (heap %+d)", alloc, heap)
	}
	if n := f.tempFiles(t); n != 0 {
		t.Errorf("%d temporary files left", n)
	}
	if n := len(f.blobFiles(t)); n != 0 {
		t.Errorf("%d blob files stored", n)
	}
}

// The default limit, tested without decoding anything: the test holds all
// the decode memory, so an upload the limit lets through waits for it and
// gets 503, and one it refuses gets 422 at once.
func TestTheDefaultLimitTakesNormalPhotosAndRefusesBombs(t *testing.T) {
	decoding := budget.New(handler.DefaultDecodeMemory, time.Millisecond)
	f := newFixture(t).withDecoding(0, decoding) // 0: the default per image
	hold, err := decoding.Reserve(context.Background(), decoding.Total())
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	ycc := func(progressive bool, hv ...byte) imagetest.JPEGLayout {
		return imagetest.JPEGLayout{Progressive: progressive, IDs: "\x01\x02\x03", HV: hv}
	}
	cases := []struct {
		name     string
		data     []byte
		accepted bool
		msg      string // of a refusal
	}{
		{"a 24-megapixel camera JPEG is taken", imagetest.FlatJPEG(t, 6000, 4000, ycc(false, 0x22, 0x11, 0x11)), true, ""},
		{"a 40-megapixel JPEG, the most pixels allowed, is taken", imagetest.FlatJPEG(t, 10000, 4000, ycc(false, 0x22, 0x11, 0x11)), true, ""},
		{"a 24-megapixel JPEG without chroma subsampling is taken", imagetest.FlatJPEG(t, 6000, 4000, ycc(false, 0x11, 0x11, 0x11)), true, ""},
		{"a 12-megapixel progressive JPEG is taken", imagetest.FlatJPEG(t, 4000, 3000, ycc(true, 0x22, 0x11, 0x11)), true, ""},
		{"a 20-megapixel 8-bit RGB PNG is taken", imagetest.ZeroPNG(t, 5472, 3648, 8, 2, false), true, ""},
		{"the issue's 16-bit RGBA bomb is refused", issueBomb(t), false, "6324x6324 pixels of 16-bit RGBA"},
		{"a 24-megapixel progressive JPEG is refused", imagetest.FlatJPEG(t, 6000, 4000, ycc(true, 0x22, 0x11, 0x11)), false, "YCbCr 4:2:0, progressive"},
		{"a 40-megapixel 8-bit RGB PNG is refused", imagetest.ZeroPNG(t, 10000, 4000, 8, 2, false), false, "10000x4000 pixels of 8-bit RGB"},
		{"an interlaced 16-bit RGBA PNG of 3000x3000 is refused", imagetest.ZeroPNG(t, 3000, 3000, 16, 6, true), false, "16-bit RGBA, interlaced"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := f.post(t, uploadURL("product", "p1", "u1"), bytes.NewReader(c.data))
			if c.accepted {
				wantError(t, rec, http.StatusServiceUnavailable, "retry later")
				if got := rec.Header().Get("Retry-After"); got != "1" {
					t.Errorf("Retry-After = %q, want 1", got)
				}
			} else {
				wantError(t, rec, http.StatusUnprocessableEntity, c.msg)
			}
			if n := f.tempFiles(t); n != 0 {
				t.Errorf("%d temporary files left", n)
			}
		})
	}
}

func TestAnUploadThatCannotGetDecodeMemoryInTimeIs503(t *testing.T) {
	decoding := budget.New(64<<20, 200*time.Millisecond)
	f := newFixture(t).withDecoding(32<<20, decoding)
	srv := httptest.NewServer(f.http)
	defer srv.Close()
	photo := imagetest.PNG(t, 300, 200)

	hold, err := decoding.Reserve(context.Background(), 60<<20) // other uploads' decodes
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got := postOver(context.Background(), t, srv, photo)
	if took := time.Since(start); got.status != http.StatusServiceUnavailable || took < 200*time.Millisecond {
		t.Fatalf("upload with the decode memory taken = %d (%s) after %v; want 503 after the 200ms wait", got.status, got.message, took)
	}
	if got.retryAfter != "1" || !strings.Contains(got.message, "retry later") {
		t.Fatalf("Retry-After %q, message %q", got.retryAfter, got.message)
	}
	if n := f.tempFiles(t); n != 0 {
		t.Errorf("%d temporary files left", n)
	}

	// Freed while an upload waits: it goes on.
	done := make(chan answer, 1)
	go func() { done <- postOver(context.Background(), t, srv, photo) }()
	time.Sleep(50 * time.Millisecond)
	hold()
	if got := <-done; got.status != http.StatusCreated {
		t.Fatalf("upload once the memory is free = %d (%s)", got.status, got.message)
	}
	if decoding.Reserved() != 0 {
		t.Fatalf("%d bytes still reserved after the upload", decoding.Reserved())
	}
}

func TestAClientThatGivesUpLeavesTheLine(t *testing.T) {
	decoding := budget.New(64<<20, time.Minute)
	f := newFixture(t).withDecoding(32<<20, decoding)
	srv := httptest.NewServer(f.http)
	defer srv.Close()
	hold, err := decoding.Reserve(context.Background(), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+uploadURL("product", "p1", "u1"), bytes.NewReader(imagetest.PNG(t, 300, 200)))
	if _, err := srv.Client().Do(req); err == nil {
		t.Fatal("the upload answered while all the decode memory was taken")
	}
	// The handler stops waiting and cleans up: its temporary file goes.
	deadline := time.Now().Add(5 * time.Second)
	for f.tempFiles(t) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned upload is still waiting")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Eight bombs at once, each just under the per-image limit: the budget lets
// two decode at a time, so the heap grows by about two decodes, not eight.
// Small limits keep the test quick (the race detector slows pixel work
// tenfold); the benchmark does the same at the default sizes.
func TestConcurrentBombsShareTheDecodeMemory(t *testing.T) {
	const perImage, total = 12 << 20, 24 << 20
	bomb := imagetest.ZeroPNG(t, 630, 630, 16, 6, false)
	n := need(t, bomb, "image/png")
	if n > perImage || n < perImage*3/4 {
		t.Fatalf("the bomb needs %d bytes, want just under %d", n, perImage)
	}

	run := func(t *testing.T, wait time.Duration) (answers []answer, decoding *budget.Budget, heap *heapSampler) {
		decoding = budget.New(total, wait)
		f := newFixture(t).withDecoding(perImage, decoding)
		srv := httptest.NewServer(f.http)
		defer srv.Close()
		// As main does when GOMEMLIMIT is unset: the decode memory plus
		// headroom (the test's: 16 MiB) is the runtime's soft limit.
		heap = sampleHeap()
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(int64(heap.base) + total + 16<<20))
		answers = make([]answer, 8)
		var wg sync.WaitGroup
		for i := range answers {
			wg.Go(func() { answers[i] = postOver(context.Background(), t, srv, bomb) })
		}
		wg.Wait()
		heap.stop()
		if decoding.Reserved() != 0 {
			t.Errorf("%d bytes still reserved after the uploads", decoding.Reserved())
		}
		if decoding.Peak() > total {
			t.Errorf("%d bytes reserved at once, more than the %d of the budget", decoding.Peak(), total)
		}
		t.Logf("8 uploads needing %.1f MiB each: %d MiB reserved at most, the heap grew by %.1f MiB",
			float64(n)/(1<<20), decoding.Peak()>>20, float64(heap.growth())/(1<<20))
		return answers, decoding, heap
	}

	t.Run("with time to wait, every upload is stored and the heap stays within the budget", func(t *testing.T) {
		answers, decoding, heap := run(t, time.Minute)
		for i, a := range answers {
			if a.status != http.StatusCreated {
				t.Errorf("upload %d = %d (%s)", i, a.status, a.message)
			}
		}
		if decoding.Peak() < 2*n {
			t.Errorf("at most %d bytes reserved: the uploads did not decode side by side", decoding.Peak())
		}
		// Eight decodes at once would take 8×need (93 MiB); the budget and
		// the soft limit keep the heap near the budget.
		if heap.growth() > total+16<<20 {
			t.Errorf("the heap grew by %d bytes, more than the %d budget and 16 MiB", heap.growth(), total)
		}
	})
	t.Run("with a short wait, the uploads that cannot get memory in time get 503", func(t *testing.T) {
		answers, _, _ := run(t, 5*time.Millisecond)
		var stored, busy int
		for i, a := range answers {
			switch {
			case a.status == http.StatusCreated:
				stored++
			case a.status == http.StatusServiceUnavailable && a.retryAfter == "1":
				busy++
			default:
				t.Errorf("upload %d = %d, Retry-After %q (%s); want 201, or 503 with Retry-After", i, a.status, a.retryAfter, a.message)
			}
		}
		t.Logf("%d stored, %d told to retry", stored, busy)
		if stored == 0 {
			t.Error("no upload was stored")
		}
	})
}
