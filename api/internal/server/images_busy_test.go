package server_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/marketmesh/marketmesh/contracts/productsrpc"
)

// images answers 503 + Retry-After while its decode budget is taken: the
// api passes the delay on, so clients know when to come back.
func TestUploadWhileImagesIsBusyCarriesRetryAfter(t *testing.T) {
	ta := newTestAPI(t)
	ta.users.Answer = func(endpoint string, _ any) (any, error) {
		if endpoint == "Products.Get" {
			return &productsrpc.Product{ID: "p1", CreatorID: "01HCALLER"}, nil
		}
		return nil, nil
	}
	ta.blobs.mu.Lock()
	ta.blobs.busy = true
	ta.blobs.mu.Unlock()
	body := "--B\r\nContent-Disposition: form-data; name=\"owner_type\"\r\n\r\nproduct\r\n" +
		"--B\r\nContent-Disposition: form-data; name=\"owner_id\"\r\n\r\np1\r\n" +
		"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\nPNG\r\n--B--\r\n"
	rec := ta.do(t, req{method: "POST", path: "/v1/images", body: body, bearer: ta.token(t, "01HCALLER"),
		header: map[string]string{"Content-Type": "multipart/form-data; boundary=B"}})
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "5" {
		t.Fatalf("busy images: %d Retry-After %q: %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	var doc struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || doc.Error.Message != "images is busy; retry after 5 s" {
		t.Fatalf("error document %s (%v)", rec.Body, err)
	}
}
