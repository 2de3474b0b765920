package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/marketmesh/marketmesh/plugins/apierror"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/services/images/internal/budget"
	"github.com/marketmesh/marketmesh/services/images/internal/store"
)

// HTTPOptions tune the blob endpoint; zero values take the defaults.
type HTTPOptions struct {
	// UploadTimeout bounds one upload: reading the body, checking, decoding,
	// thumbnailing and storing (default 60s: 10 MiB at 170 KB/s).
	UploadTimeout time.Duration
	// ServeTimeout bounds sending one file (default 60s).
	ServeTimeout time.Duration
	// MaxDecodeBytes is the most memory one upload may need to decode its
	// pixels and make its thumbnail, worked out from its header
	// (image.Header.DecodeBytes plus thumbnail.Scratch); a larger one is
	// refused (422) before anything is decoded. Default
	// DefaultMaxDecodeBytes; at most Decoding's total.
	MaxDecodeBytes int64
	// Decoding is the memory every decode of the process shares: an upload
	// reserves what it needs before decoding, and one that cannot get it
	// within the budget's wait is answered 503 with Retry-After. Default:
	// DefaultDecodeMemory bytes, waits of DefaultDecodeWait.
	Decoding *budget.Budget
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Defaults of the decode limits. 128 MiB per image takes a 40-megapixel
// camera JPEG (baseline 4:2:0: 113 MiB with its thumbnail), a 24-megapixel
// JPEG of any subsampling, a 20-megapixel 8-bit RGB PNG or a 12-megapixel
// progressive JPEG; the 6324×6324 16-bit PNG needs 365 MiB. 256 MiB
// in all is two such uploads at once, or many ordinary photos.
const (
	DefaultMaxDecodeBytes = 128 << 20
	DefaultDecodeMemory   = 256 << 20
	DefaultDecodeWait     = 5 * time.Second
)

// Blobs is the internal HTTP endpoint for image bytes (see imagesrpc).
type Blobs struct {
	store *store.Store
	opts  HTTPOptions
	mux   *http.ServeMux
}

// NewHTTP returns the blob endpoint.
func NewHTTP(s *store.Store, o HTTPOptions) *Blobs {
	if o.UploadTimeout <= 0 {
		o.UploadTimeout = 60 * time.Second
	}
	if o.ServeTimeout <= 0 {
		o.ServeTimeout = 60 * time.Second
	}
	if o.Decoding == nil {
		o.Decoding = budget.New(DefaultDecodeMemory, DefaultDecodeWait)
	}
	if o.MaxDecodeBytes <= 0 {
		o.MaxDecodeBytes = DefaultMaxDecodeBytes
	}
	// An upload that needs more than the whole budget would wait in vain.
	o.MaxDecodeBytes = min(o.MaxDecodeBytes, o.Decoding.Total())
	if o.Now == nil {
		o.Now = time.Now
	}
	b := &Blobs{store: s, opts: o, mux: http.NewServeMux()}
	b.mux.HandleFunc("POST /internal/images", deadline(o.UploadTimeout, b.upload))
	b.mux.HandleFunc("GET /internal/images/{id}", deadline(o.ServeTimeout, b.serve(false)))
	b.mux.HandleFunc("GET /internal/images/{id}/thumbnail", deadline(o.ServeTimeout, b.serve(true)))
	b.mux.HandleFunc("/internal/images", notAllowed("POST"))
	b.mux.HandleFunc("/internal/images/{id}", notAllowed("GET, HEAD"))
	b.mux.HandleFunc("/internal/images/{id}/thumbnail", notAllowed("GET, HEAD"))
	b.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apierror.WriteStatus(w, r, http.StatusNotFound, "no such endpoint")
	})
	return b
}

// ServeHTTP takes the request ID the api sent, recovers panics and routes.
func (b *Blobs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if id := r.Header.Get("X-Request-Id"); rpcmeta.ValidRequestID(id) {
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(rpcmeta.WithRequestID(r.Context(), id))
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			slog.ErrorContext(r.Context(), "images: panic", "panic", v, "stack", string(debug.Stack()))
			apierror.WriteStatus(w, r, http.StatusInternalServerError, "internal error")
		}
	}()
	b.mux.ServeHTTP(w, r)
}

// deadline gives a handler a time limit: on its context and on the
// connection's reads and writes, so a stalled client cannot hold it.
func deadline(d time.Duration, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		end, _ := ctx.Deadline()
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(end) // not supported by every writer (httptest)
		_ = rc.SetWriteDeadline(end)
		next(w, r.WithContext(ctx))
	}
}

func notAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		apierror.WriteStatus(w, r, http.StatusMethodNotAllowed, r.Method+" is not allowed here; use "+allow)
	}
}

// upload is POST /internal/images?owner_type=&owner_id=&uploader_id=.
func (b *Blobs) upload(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	im, err := b.ingest(r.Context(), r.Body, r.ContentLength, q.Get("owner_type"), q.Get("owner_id"), q.Get("uploader_id"))
	if err != nil {
		if errors.Is(err, budget.ErrBusy) {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter(b.opts.Decoding.Wait())))
		}
		writeError(w, r, err, "")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/internal/images/"+im.ID)
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(toImage(im))
}

// retryAfter is the Retry-After of an upload refused because the decode
// memory stayed taken for wait: as long again, in whole seconds.
func retryAfter(wait time.Duration) int {
	return max(1, int((wait+time.Second-1)/time.Second))
}

// serve is GET /internal/images/{id} and …/thumbnail: the file, cacheable
// forever (a blob's name is its hash, so its bytes never change).
func (b *Blobs) serve(thumbnail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		im, err := b.store.Get(id)
		if err != nil {
			writeError(w, r, err, notFound(id))
			return
		}
		blob := im.Original
		if thumbnail {
			blob = im.Thumbnail
		}
		etag := `"` + blob.SHA256 + `"`
		h := w.Header()
		h.Set("ETag", etag)
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
		if noneMatch(r.Header.Get("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		f, err := b.store.OpenBlob(blob.SHA256)
		if err != nil {
			// The metadata names a file that is not there: ours to fix, not the client's.
			h.Del("ETag")
			h.Del("Cache-Control")
			writeError(w, r, fmt.Errorf("images: blob of image %s: %v", id, err), "") // %v: a 500, not a 404
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			writeError(w, r, err, "")
			return
		}
		h.Set("Content-Type", blob.ContentType)
		h.Set("Content-Length", strconv.FormatInt(st.Size(), 10))
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}
		// io.Copy hands the *os.File to the connection's ReadFrom (sendfile).
		if _, err := io.Copy(w, f); err != nil {
			slog.DebugContext(r.Context(), "images: send interrupted", "id", id, "err", err)
		}
	}
}

// noneMatch reports whether an If-None-Match header matches etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func noneMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, candidate := range strings.Split(header, ",") {
		candidate = strings.TrimSpace(candidate)
		if candidate == "*" || strings.TrimPrefix(candidate, "W/") == etag {
			return true
		}
	}
	return false
}
