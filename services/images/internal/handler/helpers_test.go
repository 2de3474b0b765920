package handler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/plugins/apierror"
	"github.com/marketmesh/marketmesh/plugins/rpcfake"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/services/images/internal/handler"
	"github.com/marketmesh/marketmesh/services/images/internal/store"
)

type fixture struct {
	rpc     *handler.Images
	http    http.Handler
	store   *store.Store
	blobDir string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	blobDir := filepath.Join(dir, "blobs")
	s, err := store.Open(filepath.Join(dir, "images.db"), blobDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &fixture{rpc: handler.New(s), http: handler.NewHTTP(s, handler.HTTPOptions{}), store: s, blobDir: blobDir}
}

func uploadURL(ownerType, ownerID, uploader string) string {
	q := url.Values{"owner_type": {ownerType}, "owner_id": {ownerID}, "uploader_id": {uploader}}
	return "/internal/images?" + q.Encode()
}

// post sends body to the upload endpoint through the handler.
func (f *fixture) post(t testing.TB, target string, body io.Reader) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	f.http.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, target, body))
	return rec
}

// upload stores data for an owner and returns the created image.
func (f *fixture) upload(t testing.TB, ownerType, ownerID, uploader string, data []byte) imagesrpc.Image {
	t.Helper()
	rec := f.post(t, uploadURL(ownerType, ownerID, uploader), bytes.NewReader(data))
	if rec.Code != http.StatusCreated {
		t.Fatalf("upload = %d %s", rec.Code, rec.Body)
	}
	var im imagesrpc.Image
	if err := json.Unmarshal(rec.Body.Bytes(), &im); err != nil {
		t.Fatal(err)
	}
	return im
}

func (f *fixture) get(t testing.TB, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	f.http.ServeHTTP(rec, req)
	return rec
}

// blobFiles lists the content-addressed files (not temporaries).
func (f *fixture) blobFiles(t testing.TB) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(f.blobDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "tmp" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			names = append(names, d.Name())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func (f *fixture) tempFiles(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.blobDir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// wantError checks an HTTP error response: status, public shape, message.
func wantError(t testing.TB, rec *httptest.ResponseRecorder, status int, msgContains string) apierror.Body {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d (%s), want %d", rec.Code, rec.Body, status)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	var body apierror.Body
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q: %v", rec.Body, err)
	}
	if body.Error.Code != apierror.Code(status) {
		t.Errorf("code = %q, want %q", body.Error.Code, apierror.Code(status))
	}
	if !strings.Contains(body.Error.Message, msgContains) {
		t.Errorf("message = %q, want it to contain %q", body.Error.Message, msgContains)
	}
	return body
}

func as(uid string) context.Context { return rpcmeta.WithCaller(context.Background(), uid) }

// microErr fails unless err is a go-micro error of imagesrpc.Service with code, and returns it.
func microErr(t testing.TB, err error, code int32) *merrors.Error {
	t.Helper()
	return rpcfake.RequireCode(t, err, imagesrpc.Service, code)
}
