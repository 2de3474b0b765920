package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/marketmesh/marketmesh/plugins/meshtest"
)

// TestDeletingAProductClosesItsPublications: seller A deletes a product on
// which seller B has a publication. products publishes product.deleted
// through its outbox; publications closes B's listing (and only listings
// of that product); buying it is refused; the product page is a 404, not
// an outage.
func TestDeletingAProductClosesItsPublications(t *testing.T) {
	m := startMesh(t)
	_, aToken := m.signup("deleter-a@example.com")
	_, bToken := m.signup("lister-b@example.com")
	_, buyerToken := m.signup("buyer-c@example.com")

	product := m.must(201, "POST", "/v1/products", aToken, map[string]any{"name": "Doomed Lamp", "category": "home/lighting", "brand": "Acme"})
	pid := product["id"].(string)
	pubB := m.must(201, "POST", "/v1/publications", bToken, map[string]any{"product_id": pid, "title": "Doomed Lamp, boxed",
		"price": map[string]any{"amount": 2500, "currency": "USD"}, "quantity": 4, "condition": "new"})["id"].(string)
	// Another product of B's, which the deletion must not touch.
	keepB := m.seedPublication(bToken, "Sturdy Kettle", 1500, "USD", 3)

	page := m.must(200, "GET", "/v1/products/"+pid, "", nil)
	if pubs, _ := page["publications"].([]any); len(pubs) != 1 {
		t.Fatalf("before the delete the product page lists %v", page["publications"])
	}

	if st, body, _ := m.call("DELETE", "/v1/products/"+pid, aToken, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE /v1/products/%s: %d %v", pid, st, body)
	}

	t.Run("the other seller's publication is closed", func(t *testing.T) {
		meshtest.Eventually(t, 30*time.Second, func() error {
			p, err := m.publication(pubB)
			if err != nil {
				return err
			}
			if p["status"] != "closed" {
				return fmt.Errorf("publication %s is %v", pubB, p["status"])
			}
			return nil
		})
		st, body, _ := m.call("GET", "/v1/publications?product_id="+pid+"&status=active", "", nil)
		if items, _ := body["items"].([]any); st != 200 || len(items) != 0 {
			t.Fatalf("active publications of the deleted product: %d %v", st, body)
		}
	})
	t.Run("another product's publication stays on sale", func(t *testing.T) {
		p, err := m.publication(keepB)
		if err != nil {
			t.Fatal(err)
		}
		if p["status"] != "active" || m.pubQuantity(t, keepB) != 3 {
			t.Fatalf("publication %s = %v", keepB, p)
		}
	})
	t.Run("buying the closed publication is refused", func(t *testing.T) {
		// The orders service refuses a publication that is not on sale
		// before any order exists (409 conflict); had it got as far as
		// reserving, publications would have said publication_unavailable.
		a := m.placeOrder(buyerToken, orderBody(pubB, 1, "tok_visa"), "")
		if code := a.errCode(); a.status != http.StatusConflict || code != "conflict" && code != "publication_unavailable" {
			t.Fatalf("POST /v1/orders for a publication of a deleted product: %s, want 409 conflict or publication_unavailable", a)
		}
		if q := m.pubQuantity(t, pubB); q != 4 {
			t.Fatalf("the refused order moved stock: quantity %d, want 4", q)
		}
	})
	t.Run("the product page is 404, not partial", func(t *testing.T) {
		st, body, hdr := m.call("GET", "/v1/products/"+pid, "", nil)
		if st != http.StatusNotFound || errorCode(t, body, hdr) != "not_found" {
			t.Fatalf("GET /v1/products/%s: %d %v", pid, st, body)
		}
		if msg, _ := body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "product "+pid+" not found") {
			t.Fatalf("message %q does not say the product was not found", msg)
		}
	})
	t.Run("the closed publication's page shows no product, and is not partial", func(t *testing.T) {
		st, body, _ := m.call("GET", "/v1/publications/"+pubB, "", nil)
		if st != http.StatusOK || body["partial"] != false || body["product"] != nil {
			t.Fatalf("GET /v1/publications/%s: %d partial=%v product=%v unavailable=%v", pubB, st, body["partial"], body["product"], body["unavailable"])
		}
	})
	t.Run("no new publication of the deleted product", func(t *testing.T) {
		st, body, hdr := m.call("POST", "/v1/publications", bToken, map[string]any{"product_id": pid, "title": "Doomed Lamp, again",
			"price": map[string]any{"amount": 2400, "currency": "USD"}, "quantity": 1, "condition": "new"})
		if st != http.StatusUnprocessableEntity {
			t.Fatalf("POST /v1/publications on a deleted product: %d %v", st, body)
		}
		_ = errorCode(t, body, hdr)
	})
}
