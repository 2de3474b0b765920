package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/meshtest"
)

// pngBytes draws a w×h gradient.
func pngBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// upload posts a multipart image through the api.
func (m *mesh) upload(token, ownerType, ownerID string, file []byte) (int, map[string]any) {
	m.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("owner_type", ownerType)
	_ = mw.WriteField("owner_id", ownerID)
	fw, _ := mw.CreateFormFile("file", "upload.bin")
	_, _ = fw.Write(file)
	_ = mw.Close()
	req, _ := http.NewRequest("POST", m.url+"/v1/images", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func TestCatalogWalkthroughThroughTheAPI(t *testing.T) {
	m := startMesh(t)
	seller, token := m.signup("seller@example.com")
	_, buyerToken := m.signup("buyer@example.com")

	product := m.must(201, "POST", "/v1/products", token, map[string]any{
		"name": "Pixel 9 Pro Smartphone", "description": "Google phone, 256 GB, obsidian", "category": "Electronics/Phones",
		"brand": "Google", "attributes": map[string]string{"storage": "256GB"}})
	pid := product["id"].(string)
	if product["category"] != "electronics/phones" || product["creator_id"] != seller {
		t.Fatalf("product = %v", product)
	}
	m.must(201, "POST", "/v1/products", token, map[string]any{"name": "Galaxy Phone Case", "category": "electronics/accessories", "brand": "Spigen"})

	st, img := m.upload(token, "product", pid, pngBytes(t, 640, 320))
	if st != 201 || img["content_type"] != "image/png" || img["width"] != 640.0 || img["url"] == nil {
		t.Fatalf("upload: %d %v", st, img)
	}
	t.Run("image bytes are served with an ETag and 304 on If-None-Match", func(t *testing.T) {
		resp, err := httpClient.Get(m.url + img["url"].(string))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || etag == "" || len(body) != int(img["bytes"].(float64)) {
			t.Fatalf("GET image: %d %v (%d bytes)", resp.StatusCode, resp.Header, len(body))
		}
		req, _ := http.NewRequest("GET", m.url+img["url"].(string), nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("If-None-Match: %d", resp.StatusCode)
		}
		resp, err = httpClient.Get(m.url + img["thumbnail_url"].(string))
		if err != nil {
			t.Fatal(err)
		}
		thumb, _, err := image.DecodeConfig(resp.Body)
		resp.Body.Close()
		if err != nil || thumb.Width != 256 || thumb.Height != 128 {
			t.Fatalf("thumbnail %dx%d, err %v", thumb.Width, thumb.Height, err)
		}
	})
	t.Run("only the product's creator may add its images", func(t *testing.T) {
		if st, body := m.upload(buyerToken, "product", pid, pngBytes(t, 10, 10)); st != 403 {
			t.Fatalf("buyer upload: %d %v", st, body)
		}
		if st, body := m.upload(token, "product", pid, []byte("just some text, not an image")); st != 415 {
			t.Fatalf("text upload: %d %v", st, body)
		}
	})

	pub1 := m.must(201, "POST", "/v1/publications", token, map[string]any{"product_id": pid, "title": "Pixel 9 Pro, sealed",
		"price": map[string]any{"amount": 99900, "currency": "USD"}, "quantity": 3, "condition": "new"})
	pub2 := m.must(201, "POST", "/v1/publications", token, map[string]any{"product_id": pid, "title": "Pixel 9 Pro, like new",
		"price": map[string]any{"amount": 74900, "currency": "USD"}, "quantity": 1, "condition": "used"})
	if pub1["status"] != "active" || pub1["seller_id"] != seller {
		t.Fatalf("publication = %v", pub1)
	}

	t.Run("search finds by words, filters by category and by price from publications", func(t *testing.T) {
		res := m.must(200, "GET", "/v1/products?q=pixel+phone", "", nil)
		items := res["items"].([]any)
		if len(items) != 2 || items[0].(map[string]any)["id"] != pid {
			t.Fatalf("q=pixel phone: %v", res)
		}
		if n := len(m.must(200, "GET", "/v1/products?category=electronics", "", nil)["items"].([]any)); n != 2 {
			t.Fatalf("category=electronics: %d items", n)
		}
		if n := len(m.must(200, "GET", "/v1/products?category=electronics/accessories", "", nil)["items"].([]any)); n != 1 {
			t.Fatalf("category=electronics/accessories: %d items", n)
		}
		// Prices reach products through publication.changed events.
		meshtest.Eventually(t, 10*time.Second, func() error {
			res := m.must(200, "GET", "/v1/products?min_price=70000&max_price=80000&currency=USD", "", nil)
			if items := res["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != pid {
				return fmt.Errorf("price filter: %v", res)
			}
			return nil
		})
	})

	t.Run("the product page composes product, images and active publications cheapest first", func(t *testing.T) {
		page := m.must(200, "GET", "/v1/products/"+pid, "", nil)
		pubs := page["publications"].([]any)
		if page["partial"] != false || len(page["images"].([]any)) != 1 || len(pubs) != 2 ||
			pubs[0].(map[string]any)["id"] != pub2["id"] {
			t.Fatalf("product page: %v", page)
		}
	})
	t.Run("the publication page composes publication, product, images and seller", func(t *testing.T) {
		page := m.must(200, "GET", "/v1/publications/"+pub1["id"].(string), "", nil)
		if page["partial"] != false || page["product"].(map[string]any)["id"] != pid ||
			page["seller"].(map[string]any)["id"] != seller {
			t.Fatalf("publication page: %v", page)
		}
	})
	t.Run("the seller profile counts active publications", func(t *testing.T) {
		p := m.must(200, "GET", "/v1/users/"+seller, "", nil)
		if p["publication_count"] != 2.0 || p["partial"] != false {
			t.Fatalf("profile = %v", p)
		}
	})
	t.Run("the wishlist shows title, price and availability", func(t *testing.T) {
		m.must(201, "POST", "/v1/users/me/wishlist", buyerToken, map[string]string{"publication_id": pub2["id"].(string)})
		w := m.must(200, "GET", "/v1/users/me/wishlist", buyerToken, nil)
		it := w["items"].([]any)[0].(map[string]any)
		if it["title"] != "Pixel 9 Pro, like new" || it["active"] != true || it["price"].(map[string]any)["amount"] != 74900.0 {
			t.Fatalf("wishlist = %v", w)
		}
	})
	t.Run("only the seller may change a publication", func(t *testing.T) {
		m.must(403, "PATCH", "/v1/publications/"+pub1["id"].(string), buyerToken, map[string]any{"quantity": 0})
		p := m.must(200, "PATCH", "/v1/publications/"+pub1["id"].(string), token, map[string]any{"status": "paused"})
		if p["status"] != "paused" {
			t.Fatalf("patched = %v", p)
		}
	})

	t.Run("with images down the product page is partial, with products down it is 503", func(t *testing.T) {
		m.procs["images"].stop()
		page := m.must(200, "GET", "/v1/products/"+pid, "", nil)
		if page["partial"] != true || fmt.Sprint(page["unavailable"]) != "[images]" || page["product"] == nil {
			t.Fatalf("images down: %v", page)
		}
		m.procs["images"].start()
		m.procs["products"].stop()
		st, body, hdr := m.call("GET", "/v1/products/"+pid, "", nil)
		if st != 503 || errorCode(t, body, hdr) != "unavailable" {
			t.Fatalf("products down: %d %v", st, body)
		}
		m.procs["products"].start()
		m.consul.WaitPassing(t, "marketmesh.products", 1, 15*time.Second)
		m.consul.WaitPassing(t, "marketmesh.images", 1, 15*time.Second)
		meshtest.Eventually(t, 10*time.Second, func() error {
			page := m.must(200, "GET", "/v1/products/"+pid, "", nil)
			if page["partial"] != false {
				return fmt.Errorf("still partial: %v", page["unavailable"])
			}
			return nil
		})
	})

	t.Run("an aggregated read takes as long as its slowest part, not the sum", func(t *testing.T) {
		// Both optional parts hang: run one after the other they would take
		// two part timeouts (2 × 1 s in these tests); in parallel, one.
		m.procs["images"].pause()
		m.procs["publications"].pause()
		defer m.procs["images"].resume()
		defer m.procs["publications"].resume()
		start := time.Now()
		page := m.must(200, "GET", "/v1/products/"+pid, "", nil)
		took := time.Since(start)
		if page["partial"] != true || len(page["unavailable"].([]any)) != 2 {
			t.Fatalf("page = %v", page)
		}
		if took < 950*time.Millisecond || took > 1800*time.Millisecond {
			t.Fatalf("took %v; want about one part timeout (1 s), not two", took)
		}
		t.Logf("two hung optional parts: answered partial in %v", took.Round(time.Millisecond))
	})
}

func TestCatalogBadInputIsA4xx(t *testing.T) {
	m := startMesh(t)
	_, token := m.signup("cat-bad@example.com")
	prod := m.must(201, "POST", "/v1/products", token, map[string]any{"name": "Thing", "category": "misc"})
	pid := prod["id"].(string)
	cases := []struct {
		name, method, path string
		body               any
		status             int
		mention            string
	}{
		{"a product without a category", "POST", "/v1/products", `{"name":"X"}`, 422, "category"},
		{"a category with bad characters", "POST", "/v1/products", `{"name":"X","category":"a b/c!"}`, 422, "category"},
		{"an unknown product field", "POST", "/v1/products", `{"name":"X","category":"a","price":5}`, 400, "price"},
		{"attributes of the wrong type", "POST", "/v1/products", `{"name":"X","category":"a","attributes":{"k":1}}`, 400, "attributes"},
		{"a bad sort", "GET", "/v1/products?sort=cheapest", nil, 400, "sort"},
		{"a min price above the max", "GET", "/v1/products?min_price=10&max_price=5", nil, 400, "min_price"},
		{"a negative price filter", "GET", "/v1/products?min_price=-1", nil, 400, "min_price"},
		{"an unknown currency", "GET", "/v1/products?currency=usd", nil, 400, "currency"},
		{"an unknown product", "GET", "/v1/products/01NOPE", nil, 404, "01NOPE"},
		{"a publication of a product that does not exist", "POST", "/v1/publications",
			`{"product_id":"01NOPE","title":"T","price":{"amount":100,"currency":"USD"},"quantity":1,"condition":"new"}`, 422, "product"},
		{"a negative price", "POST", "/v1/publications",
			`{"product_id":"` + pid + `","title":"T","price":{"amount":-5,"currency":"USD"},"quantity":1,"condition":"new"}`, 422, "price"},
		{"a bad condition", "POST", "/v1/publications",
			`{"product_id":"` + pid + `","title":"T","price":{"amount":5,"currency":"USD"},"quantity":1,"condition":"mint"}`, 422, "condition"},
		{"a bad publication status filter", "GET", "/v1/publications?status=sold", nil, 400, "status"},
		{"images without an owner", "GET", "/v1/images", nil, 400, "owner_type"},
		{"an upload that is not multipart", "POST", "/v1/images", `{"file":"x"}`, 415, "multipart"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, body, hdr := m.call(c.method, c.path, token, c.body)
			if st != c.status {
				t.Fatalf("status %d, want %d: %v", st, c.status, body)
			}
			errorCode(t, body, hdr)
			if msg := body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, c.mention) {
				t.Fatalf("message %q does not mention %q", msg, c.mention)
			}
		})
	}
	t.Run("an 11 MiB upload is refused with 413", func(t *testing.T) {
		if st, body := m.upload(token, "product", pid, bytes.Repeat([]byte{0x89}, 11<<20)); st != 413 {
			t.Fatalf("11 MiB: %d %v", st, body)
		}
	})
}
