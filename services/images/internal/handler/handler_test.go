package handler_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/services/images/internal/imagetest"
)

// uploadN stores n distinct small images for an owner and returns their IDs.
func (f *fixture) uploadN(t *testing.T, ownerType, ownerID, uploader string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = f.upload(t, ownerType, ownerID, uploader, imagetest.PNG(t, 4+i, 4)).ID
	}
	return ids
}

func TestGet(t *testing.T) {
	f := newFixture(t)
	im := f.upload(t, "product", "p1", "u1", imagetest.PNG(t, 20, 10))
	var got imagesrpc.Image
	if err := f.rpc.Get(context.Background(), &imagesrpc.IDRequest{ID: im.ID}, &got); err != nil {
		t.Fatal(err)
	}
	if got != im {
		t.Fatalf("Get = %+v, want %+v", got, im)
	}
	me := microErr(t, f.rpc.Get(context.Background(), &imagesrpc.IDRequest{ID: "missing"}, &got), 404)
	if !strings.Contains(me.Detail, "missing") {
		t.Errorf("detail = %q, want it to name the image", me.Detail)
	}
}

func TestListPagesOldestFirst(t *testing.T) {
	f := newFixture(t)
	want := f.uploadN(t, "product", "p1", "u1", 5)
	f.uploadN(t, "product", "p2", "u1", 1)
	var got []string
	req := imagesrpc.ListRequest{OwnerType: "product", OwnerID: "p1", PageSize: 2}
	for page := 0; ; page++ {
		var rsp imagesrpc.ListResponse
		if err := f.rpc.List(context.Background(), &req, &rsp); err != nil {
			t.Fatal(err)
		}
		if wantLen := []int{2, 2, 1}[page]; len(rsp.Items) != wantLen {
			t.Fatalf("page %d has %d items, want %d", page, len(rsp.Items), wantLen)
		}
		for _, im := range rsp.Items {
			got = append(got, im.ID)
		}
		if rsp.NextPageToken == "" {
			break
		}
		req.PageToken = rsp.NextPageToken
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
}

func TestListPageSizes(t *testing.T) {
	f := newFixture(t)
	f.uploadN(t, "user", "u1", "u1", 23)
	cases := []struct {
		name      string
		size      int
		wantItems int
	}{
		{"no page size means 20", 0, 20},
		{"a negative page size means 20", -5, 20},
		{"a page size of 3 gives 3", 3, 3},
		{"a page size over 100 is capped (all 23 fit)", 1000, 23},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rsp imagesrpc.ListResponse
			if err := f.rpc.List(context.Background(), &imagesrpc.ListRequest{OwnerType: "user", OwnerID: "u1", PageSize: c.size}, &rsp); err != nil {
				t.Fatal(err)
			}
			if len(rsp.Items) != c.wantItems {
				t.Fatalf("%d items, want %d", len(rsp.Items), c.wantItems)
			}
			if (rsp.NextPageToken != "") != (c.wantItems < 23) {
				t.Fatalf("next token %q with %d of 23 items", rsp.NextPageToken, len(rsp.Items))
			}
		})
	}
}

func TestListOfAnOwnerWithoutImagesIsEmpty(t *testing.T) {
	f := newFixture(t)
	var rsp imagesrpc.ListResponse
	if err := f.rpc.List(context.Background(), &imagesrpc.ListRequest{OwnerType: "product", OwnerID: "none"}, &rsp); err != nil {
		t.Fatal(err)
	}
	if rsp.Items == nil || len(rsp.Items) != 0 || rsp.NextPageToken != "" {
		t.Fatalf("List = %+v, want an empty (non-nil) page", rsp)
	}
}

func TestListRefusals(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name string
		req  imagesrpc.ListRequest
		code int32
		msg  string
	}{
		{"a bad page token is 400", imagesrpc.ListRequest{OwnerType: "product", OwnerID: "p1", PageToken: "%%%"}, 400, "page_token"},
		{"a forged page token is 400", imagesrpc.ListRequest{OwnerType: "product", OwnerID: "p1", PageToken: "aGVsbG8"}, 400, "page_token"},
		{"an unknown owner type is 422", imagesrpc.ListRequest{OwnerType: "shop", OwnerID: "p1"}, 422, "owner_type"},
		{"a missing owner ID is 422", imagesrpc.ListRequest{OwnerType: "product"}, 422, "owner_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			me := microErr(t, f.rpc.List(context.Background(), &c.req, &imagesrpc.ListResponse{}), c.code)
			if !strings.Contains(me.Detail, c.msg) {
				t.Errorf("detail = %q, want it to contain %q", me.Detail, c.msg)
			}
		})
	}
}

func TestFirst(t *testing.T) {
	f := newFixture(t)
	a := f.uploadN(t, "publication", "a", "u1", 3)
	b := f.uploadN(t, "publication", "b", "u2", 1)
	f.uploadN(t, "product", "c", "u1", 1)
	var rsp imagesrpc.FirstResponse
	req := imagesrpc.FirstRequest{OwnerType: "publication", OwnerIDs: []string{"a", "b", "c", "nobody"}}
	if err := f.rpc.First(context.Background(), &req, &rsp); err != nil {
		t.Fatal(err)
	}
	if len(rsp.Images) != 2 || rsp.Images["a"].ID != a[0] || rsp.Images["b"].ID != b[0] {
		t.Fatalf("First = %+v; want a's oldest and b's only image", rsp.Images)
	}
	// After the first goes, the next oldest is first.
	if err := f.rpc.Delete(as("u1"), &imagesrpc.IDRequest{ID: a[0]}, &imagesrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := f.rpc.First(context.Background(), &req, &rsp); err != nil {
		t.Fatal(err)
	}
	if rsp.Images["a"].ID != a[1] {
		t.Fatalf("First[a] = %s, want %s", rsp.Images["a"].ID, a[1])
	}
}

func TestFirstRefusals(t *testing.T) {
	f := newFixture(t)
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("p%d", i)
	}
	cases := []struct {
		name string
		req  imagesrpc.FirstRequest
		msg  string
	}{
		{"more than 100 owners is 422", imagesrpc.FirstRequest{OwnerType: "product", OwnerIDs: many}, "100"},
		{"an unknown owner type is 422", imagesrpc.FirstRequest{OwnerType: "x", OwnerIDs: []string{"a"}}, "owner_type"},
		{"a bad owner ID is 422", imagesrpc.FirstRequest{OwnerType: "product", OwnerIDs: []string{"a/b"}}, "owner_ids"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			me := microErr(t, f.rpc.First(context.Background(), &c.req, &imagesrpc.FirstResponse{}), 422)
			if !strings.Contains(me.Detail, c.msg) {
				t.Errorf("detail = %q, want it to contain %q", me.Detail, c.msg)
			}
		})
	}
	var rsp imagesrpc.FirstResponse
	if err := f.rpc.First(context.Background(), &imagesrpc.FirstRequest{OwnerType: "product", OwnerIDs: many[:100]}, &rsp); err != nil {
		t.Fatalf("100 owners = %v, want fine", err)
	}
	if rsp.Images == nil {
		t.Fatal("Images is nil, want an empty map")
	}
}

func TestDeleteRules(t *testing.T) {
	f := newFixture(t)
	im := f.upload(t, "product", "p1", "owner", imagetest.PNG(t, 9, 9))
	cases := []struct {
		name string
		ctx  context.Context
		id   string
		code int32
	}{
		{"without a caller it is 401", context.Background(), im.ID, 401},
		{"with an empty caller it is 401", as(""), im.ID, 401},
		{"an unknown image is 404", as("owner"), "01HZZZZZZZZZZZZZZZZZZZZZZZ", 404},
		{"another user is 403", as("someone-else"), im.ID, 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			microErr(t, f.rpc.Delete(c.ctx, &imagesrpc.IDRequest{ID: c.id}, &imagesrpc.Empty{}), c.code)
		})
	}
	if err := f.rpc.Get(context.Background(), &imagesrpc.IDRequest{ID: im.ID}, &imagesrpc.Image{}); err != nil {
		t.Fatalf("refused deletes removed the image: %v", err)
	}
	if err := f.rpc.Delete(as("owner"), &imagesrpc.IDRequest{ID: im.ID}, &imagesrpc.Empty{}); err != nil {
		t.Fatalf("the uploader's delete = %v", err)
	}
	microErr(t, f.rpc.Get(context.Background(), &imagesrpc.IDRequest{ID: im.ID}, &imagesrpc.Image{}), 404)
	microErr(t, f.rpc.Delete(as("owner"), &imagesrpc.IDRequest{ID: im.ID}, &imagesrpc.Empty{}), 404)
	if files := f.blobFiles(t); len(files) != 0 {
		t.Fatalf("blob files left: %v", files)
	}
}
