package handler_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/services/images/internal/imagetest"
)

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func TestUploadAcceptsEachSupportedFormat(t *testing.T) {
	cases := []struct {
		name   string
		data   []byte
		ct     string
		w, h   int
		thumbT string
	}{
		{"a JPEG is stored with its dimensions", imagetest.JPEG(t, 640, 480), "image/jpeg", 640, 480, "image/jpeg"},
		{"a PNG is stored with its dimensions", imagetest.PNG(t, 300, 200), "image/png", 300, 200, "image/jpeg"},
		{"a PNG with alpha gets a PNG thumbnail", imagetest.PNGAlpha(t, 512, 512), "image/png", 512, 512, "image/png"},
		{"a GIF is stored with its dimensions", imagetest.GIF(t, 50, 40), "image/gif", 50, 40, "image/jpeg"},
		{"a WebP is stored with its dimensions", imagetest.WebP, "image/webp", 1, 1, "image/png"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			im := f.upload(t, imagesrpc.OwnerProduct, "p1", "u1", c.data)
			want := imagesrpc.Image{ID: im.ID, OwnerType: "product", OwnerID: "p1", UploaderID: "u1",
				ContentType: c.ct, Bytes: int64(len(c.data)), Width: c.w, Height: c.h, SHA256: sha(c.data), CreatedAt: im.CreatedAt}
			if im != want {
				t.Fatalf("image = %+v\nwant    %+v", im, want)
			}
			if im.ID == "" || im.CreatedAt.IsZero() {
				t.Fatalf("image = %+v: no ID or time", im)
			}
			orig := f.get(t, "/internal/images/"+im.ID, nil)
			if orig.Code != http.StatusOK || !bytes.Equal(orig.Body.Bytes(), c.data) {
				t.Fatalf("GET original = %d, %d bytes; want the uploaded bytes", orig.Code, orig.Body.Len())
			}
			if got := orig.Header().Get("Content-Type"); got != c.ct {
				t.Errorf("original Content-Type = %q, want %q", got, c.ct)
			}
			th := f.get(t, "/internal/images/"+im.ID+"/thumbnail", nil)
			if th.Code != http.StatusOK {
				t.Fatalf("GET thumbnail = %d", th.Code)
			}
			if got := th.Header().Get("Content-Type"); got != c.thumbT {
				t.Errorf("thumbnail Content-Type = %q, want %q", got, c.thumbT)
			}
			if f.tempFiles(t) != 0 {
				t.Error("temporary files left after a successful upload")
			}
		})
	}
}

func TestThumbnailDimensions(t *testing.T) {
	cases := []struct {
		name         string
		data         []byte
		wantW, wantH int
	}{
		{"a landscape image is 256 px wide", imagetest.JPEG(t, 1200, 600), 256, 128},
		{"a portrait image is 256 px high", imagetest.PNG(t, 400, 1000), 102, 256},
		{"a small image is not upscaled", imagetest.PNG(t, 120, 80), 120, 80},
		{"a square image is 256 by 256", imagetest.GIF(t, 700, 700), 256, 256},
	}
	f := newFixture(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			im := f.upload(t, "product", "p1", "u1", c.data)
			rec := f.get(t, "/internal/images/"+im.ID+"/thumbnail", nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET thumbnail = %d %s", rec.Code, rec.Body)
			}
			cfg, _, err := image.DecodeConfig(bytes.NewReader(rec.Body.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Width != c.wantW || cfg.Height != c.wantH {
				t.Fatalf("thumbnail is %dx%d, want %dx%d", cfg.Width, cfg.Height, c.wantW, c.wantH)
			}
		})
	}
}

func TestUploadRefusals(t *testing.T) {
	png := imagetest.PNG(t, 10, 10)
	cases := []struct {
		name   string
		target string
		body   []byte
		status int
		msg    string
	}{
		{"a text file named .png is unsupported", uploadURL("product", "p1", "u1"), []byte("I am not an image, whatever my name says."), 415, "text/plain"},
		{"an empty body is unsupported", uploadURL("product", "p1", "u1"), nil, 415, "empty"},
		{"a BMP is unsupported", uploadURL("product", "p1", "u1"), append([]byte("BM"), make([]byte, 100)...), 415, "image/bmp"},
		{"a PNG signature with garbage after it is invalid", uploadURL("product", "p1", "u1"), append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("junk"), 50)...), 422, "not a valid image/png"},
		{"a missing owner type is refused", uploadURL("", "p1", "u1"), png, 422, "owner_type"},
		{"an unknown owner type is refused", uploadURL("order", "p1", "u1"), png, 422, "owner_type"},
		{"a missing owner ID is refused", uploadURL("product", "", "u1"), png, 422, "owner_id"},
		{"an owner ID with a slash is refused", uploadURL("product", "a/b", "u1"), png, 422, "owner_id"},
		{"an owner ID of 65 characters is refused", uploadURL("product", strings.Repeat("x", 65), "u1"), png, 422, "owner_id"},
		{"a missing uploader is refused", uploadURL("product", "p1", ""), png, 422, "uploader_id"},
		{"an uploader with a slash is refused", uploadURL("user", "p1", "../u"), png, 422, "uploader_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			rec := f.post(t, c.target, bytes.NewReader(c.body))
			wantError(t, rec, c.status, c.msg)
			if n := len(f.blobFiles(t)); n != 0 {
				t.Errorf("%d blob files stored by a refused upload", n)
			}
			if n := f.tempFiles(t); n != 0 {
				t.Errorf("%d temporary files left by a refused upload", n)
			}
		})
	}
}

func TestUploadIgnoresTheClaimedContentType(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest(http.MethodPost, uploadURL("product", "p1", "u1"), strings.NewReader("plain text"))
	req.Header.Set("Content-Type", "image/png")
	req.Header.Set("Content-Disposition", `attachment; filename="cat.png"`)
	rec := httptest.NewRecorder()
	f.http.ServeHTTP(rec, req)
	wantError(t, rec, http.StatusUnsupportedMediaType, "text/plain")

	jpeg := imagetest.JPEG(t, 20, 20)
	req = httptest.NewRequest(http.MethodPost, uploadURL("product", "p1", "u1"), bytes.NewReader(jpeg))
	req.Header.Set("Content-Type", "image/gif")
	rec = httptest.NewRecorder()
	f.http.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated || !strings.Contains(rec.Body.String(), `"content_type":"image/jpeg"`) {
		t.Fatalf("upload = %d %s; want a JPEG whatever the header says", rec.Code, rec.Body)
	}
}

func TestUploadOfElevenMiBIsTooLarge(t *testing.T) {
	const size = 11 << 20
	head := imagetest.PNG(t, 10, 10) // a valid type, so only the size can refuse it
	cases := []struct {
		name          string
		contentLength int64 // -1: unknown (chunked)
	}{
		{"a declared Content-Length over the limit is refused up front", size},
		{"a streamed body is cut off at the limit", -1},
		{"a body longer than its small declared length is still counted", 1000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			req := httptest.NewRequest(http.MethodPost, uploadURL("product", "p1", "u1"), imagetest.Body(head, size))
			req.ContentLength = c.contentLength
			rec := httptest.NewRecorder()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			f.http.ServeHTTP(rec, req)
			runtime.ReadMemStats(&after)
			wantError(t, rec, http.StatusRequestEntityTooLarge, "10 MiB")
			// Streamed through a fixed buffer: far less than the body is allocated.
			if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
				t.Errorf("refusing 11 MiB allocated %d bytes", n)
			}
			if n := f.tempFiles(t); n != 0 {
				t.Errorf("%d temporary files left", n)
			}
			if n := len(f.blobFiles(t)); n != 0 {
				t.Errorf("%d blob files stored", n)
			}
		})
	}
}

func TestUploadOfExactlyTheLimitIsNotTooLarge(t *testing.T) {
	// 10 MiB of a PNG header plus filler: not too large, so the next check
	// (the image is broken) answers.
	f := newFixture(t)
	rec := f.post(t, uploadURL("product", "p1", "u1"), imagetest.Body(imagetest.PNG(t, 10, 10), imagesrpc.MaxBytes))
	if rec.Code == http.StatusRequestEntityTooLarge {
		t.Fatalf("exactly %d bytes refused as too large", imagesrpc.MaxBytes)
	}
}

func TestADecompressionBombIsRefusedBeforeDecoding(t *testing.T) {
	f := newFixture(t)
	bomb := imagetest.HugePNG(t, 50000, 50000)
	if len(bomb) > 1024 {
		t.Fatalf("the bomb is %d bytes, want a few hundred", len(bomb))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rec := f.post(t, uploadURL("product", "p1", "u1"), bytes.NewReader(bomb))
	runtime.ReadMemStats(&after)
	wantError(t, rec, http.StatusUnprocessableEntity, "50000x50000")
	// Decoding would allocate 10 GB (50000*50000*4): it must not even start.
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
		t.Fatalf("refusing the bomb allocated %d bytes", n)
	}
}

func TestTooManyPixelsAreRefused(t *testing.T) {
	f := newFixture(t)
	// 8000x6000 = 48 MP: each side is within 10000, the area is not.
	rec := f.post(t, uploadURL("product", "p1", "u1"), bytes.NewReader(imagetest.HugePNG(t, 8000, 6000)))
	wantError(t, rec, http.StatusUnprocessableEntity, "megapixels")
	rec = f.post(t, uploadURL("product", "p1", "u1"), bytes.NewReader(imagetest.HugePNG(t, 10001, 10)))
	wantError(t, rec, http.StatusUnprocessableEntity, "at most 10000")
}

func TestServingSetsCachingHeaders(t *testing.T) {
	f := newFixture(t)
	data := imagetest.JPEG(t, 600, 300)
	im := f.upload(t, "product", "p1", "u1", data)
	orig := f.get(t, "/internal/images/"+im.ID, nil)
	th := f.get(t, "/internal/images/"+im.ID+"/thumbnail", nil)
	thumbSHA := sha(th.Body.Bytes())
	cases := []struct {
		name string
		rec  *httptest.ResponseRecorder
		etag string
		size int
	}{
		{"the original's ETag is its SHA-256", orig, `"` + sha(data) + `"`, len(data)},
		{"the thumbnail's ETag is its own SHA-256", th, `"` + thumbSHA + `"`, th.Body.Len()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := c.rec.Header()
			if c.rec.Code != http.StatusOK {
				t.Fatalf("status = %d", c.rec.Code)
			}
			if got := h.Get("ETag"); got != c.etag {
				t.Errorf("ETag = %q, want %q", got, c.etag)
			}
			if got := h.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
				t.Errorf("Cache-Control = %q", got)
			}
			if got := h.Get("Content-Length"); got != strconv.Itoa(c.size) {
				t.Errorf("Content-Length = %q, want %d", got, c.size)
			}
			if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q", got)
			}
		})
	}
	if thumbSHA == sha(data) {
		t.Fatal("thumbnail and original have the same bytes")
	}
}

func TestIfNoneMatch(t *testing.T) {
	f := newFixture(t)
	data := imagetest.PNG(t, 300, 300)
	im := f.upload(t, "product", "p1", "u1", data)
	etag := `"` + sha(data) + `"`
	thumbETag := f.get(t, "/internal/images/"+im.ID+"/thumbnail", nil).Header().Get("ETag")
	cases := []struct {
		name   string
		path   string
		header string
		status int
	}{
		{"the current ETag gives 304", "", etag, http.StatusNotModified},
		{"a weak form of the ETag gives 304", "", "W/" + etag, http.StatusNotModified},
		{"the ETag in a list gives 304", "", `"other", ` + etag, http.StatusNotModified},
		{"a star gives 304", "", "*", http.StatusNotModified},
		{"another ETag gives the bytes", "", `"0000"`, http.StatusOK},
		{"the thumbnail's ETag does not match the original", "", thumbETag, http.StatusOK},
		{"the thumbnail's own ETag gives 304", "/thumbnail", thumbETag, http.StatusNotModified},
		{"the original's ETag does not match the thumbnail", "/thumbnail", etag, http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := f.get(t, "/internal/images/"+im.ID+c.path, http.Header{"If-None-Match": {c.header}})
			if rec.Code != c.status {
				t.Fatalf("status = %d, want %d", rec.Code, c.status)
			}
			if c.status == http.StatusNotModified {
				if rec.Body.Len() != 0 {
					t.Errorf("304 with a %d byte body", rec.Body.Len())
				}
				if rec.Header().Get("ETag") == "" || rec.Header().Get("Cache-Control") == "" {
					t.Errorf("304 without ETag or Cache-Control: %v", rec.Header())
				}
			}
		})
	}
}

func TestHeadSendsHeadersOnly(t *testing.T) {
	f := newFixture(t)
	data := imagetest.PNG(t, 30, 30)
	im := f.upload(t, "product", "p1", "u1", data)
	rec := httptest.NewRecorder()
	f.http.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/internal/images/"+im.ID, nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != strconv.Itoa(len(data)) {
		t.Fatalf("HEAD = %d, body %d bytes, Content-Length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}
}

func TestServingErrorsUseTheErrorShape(t *testing.T) {
	f := newFixture(t)
	im := f.upload(t, "product", "p1", "u1", imagetest.PNG(t, 8, 8))
	cases := []struct {
		name, method, path string
		status             int
		msg                string
	}{
		{"an unknown image is 404", "GET", "/internal/images/01HZZZZZZZZZZZZZZZZZZZZZZZ", 404, "not found"},
		{"an unknown image's thumbnail is 404", "GET", "/internal/images/nope/thumbnail", 404, "not found"},
		{"an unknown path is 404", "GET", "/internal/other", 404, "no such endpoint"},
		{"a path below the thumbnail is 404", "GET", "/internal/images/" + im.ID + "/thumbnail/x", 404, ""},
		{"GET on the upload endpoint is 405", "GET", "/internal/images", 405, "POST"},
		{"DELETE on an image is 405", "DELETE", "/internal/images/" + im.ID, 405, "GET"},
		{"PUT on a thumbnail is 405", "PUT", "/internal/images/" + im.ID + "/thumbnail", 405, "GET"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			f.http.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
			wantError(t, rec, c.status, c.msg)
		})
	}
}

func TestErrorsCarryTheRequestID(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest(http.MethodGet, "/internal/images/nope", nil)
	req.Header.Set("X-Request-Id", "req-123")
	rec := httptest.NewRecorder()
	f.http.ServeHTTP(rec, req)
	body := wantError(t, rec, http.StatusNotFound, "nope")
	if body.Error.RequestID != "req-123" || rec.Header().Get("X-Request-Id") != "req-123" {
		t.Fatalf("request_id = %q, header %q; want req-123", body.Error.RequestID, rec.Header().Get("X-Request-Id"))
	}
}

func TestContentAddressing(t *testing.T) {
	f := newFixture(t)
	data := imagetest.JPEG(t, 500, 400)
	a := f.upload(t, "product", "p1", "u1", data)
	b := f.upload(t, "publication", "q1", "u2", data)
	if a.ID == b.ID || a.SHA256 != b.SHA256 {
		t.Fatalf("two uploads: ids %s, %s; hashes %s, %s", a.ID, b.ID, a.SHA256, b.SHA256)
	}
	if files := f.blobFiles(t); len(files) != 2 { // one original, one thumbnail
		t.Fatalf("blob files = %v, want one original and one thumbnail", files)
	}
	if err := f.rpc.Delete(as("u1"), &imagesrpc.IDRequest{ID: a.ID}, &imagesrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	if files := f.blobFiles(t); len(files) != 2 {
		t.Fatalf("after deleting one of two images: blob files = %v, want both kept", files)
	}
	if rec := f.get(t, "/internal/images/"+b.ID, nil); rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), data) {
		t.Fatalf("the remaining image: %d", rec.Code)
	}
	wantError(t, f.get(t, "/internal/images/"+a.ID, nil), http.StatusNotFound, a.ID)
	if err := f.rpc.Delete(as("u2"), &imagesrpc.IDRequest{ID: b.ID}, &imagesrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	if files := f.blobFiles(t); len(files) != 0 {
		t.Fatalf("after deleting both: blob files = %v, want none", files)
	}
}

// A real server: the body is streamed over a connection, and the early
// refusals reach a client that is still sending.
func TestOverARealConnection(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.http)
	defer srv.Close()
	data := imagetest.JPEG(t, 800, 600)
	resp, err := srv.Client().Post(srv.URL+uploadURL("user", "u9", "u9"), "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload = %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+uploadURL("user", "u9", "u9"), imagetest.Body(nil, 11<<20))
	req.ContentLength = 11 << 20
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("11 MiB upload = %d, want 413", resp.StatusCode)
	}
}
