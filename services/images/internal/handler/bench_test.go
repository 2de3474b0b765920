package handler_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

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
