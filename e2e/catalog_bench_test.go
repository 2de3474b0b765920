package e2e

import (
	"bytes"
	"image"
	"image/png"
	"io"
	"math/rand"
	"mime/multipart"
	"net/http"
	"testing"
	"time"
)

// BenchmarkCatalogReads compares an aggregated read (the product page: products,
// images and publications in parallel) with single-service reads, end to end
// through the api.
func BenchmarkCatalogReads(b *testing.B) {
	m := startMesh(b, "MARKETMESH_LOG_LEVEL=error", "API_PART_TIMEOUT=300ms")
	_, token := m.signup("bench-catalog@example.com")
	p := m.must(201, "POST", "/v1/products", token, map[string]any{"name": "Bench Lamp", "category": "home/lighting", "brand": "Acme"})
	pid := p["id"].(string)
	if st, body := m.upload(token, "product", pid, pngBytes(b, 64, 64)); st != 201 {
		b.Fatalf("upload: %d %v", st, body)
	}
	pub := m.must(201, "POST", "/v1/publications", token, map[string]any{"product_id": pid, "title": "Bench Lamp",
		"price": map[string]any{"amount": 1999, "currency": "USD"}, "quantity": 5, "condition": "new"})
	for _, c := range []struct{ name, path string }{
		{"single service: GET /v1/categories (products)", "/v1/categories"},
		{"single service: GET /v1/publications (publications)", "/v1/publications?product_id=" + pid},
		{"aggregated: GET /v1/products/{id} (products + images + publications)", "/v1/products/" + pid},
		{"aggregated: GET /v1/publications/{id} (publications + images, then products + users)", "/v1/publications/" + pub["id"].(string)},
	} {
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				resp, err := httpClient.Get(m.url + c.path)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("%s: %v %v", c.path, err, resp)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(start))
			}
			reportPercentiles(b, lat)
		})
	}
}

// BenchmarkUpload5MiBThroughAPI streams a 5 MiB PNG through the api to the
// images service (multipart in, sniffing, hashing, thumbnail, blob write).
func BenchmarkUpload5MiBThroughAPI(b *testing.B) {
	m := startMesh(b, "MARKETMESH_LOG_LEVEL=error")
	_, token := m.signup("bench-upload@example.com")
	p := m.must(201, "POST", "/v1/products", token, map[string]any{"name": "Upload", "category": "misc"})
	file := noisyPNG(b, 1320, 1320) // incompressible noise: ~5 MiB
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("owner_type", "product")
	_ = mw.WriteField("owner_id", p["id"].(string))
	fw, _ := mw.CreateFormFile("file", "noise.png")
	_, _ = fw.Write(file)
	_ = mw.Close()
	form := body.Bytes()
	b.SetBytes(int64(len(file)))
	b.Logf("file %.2f MiB", float64(len(file))/(1<<20))
	for b.Loop() {
		req, _ := http.NewRequest("POST", m.url+"/v1/images", bytes.NewReader(form))
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := httpClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			b.Fatalf("upload: %v %v", err, resp)
		}
		resp.Body.Close()
	}
}

func noisyPNG(b *testing.B, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewSource(1))
	for i := range img.Pix {
		img.Pix[i] = byte(rng.Intn(256))
	}
	for i := 3; i < len(img.Pix); i += 4 {
		img.Pix[i] = 255
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}
