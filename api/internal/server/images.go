package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/contracts/productsrpc"
	"github.com/marketmesh/marketmesh/plugins/apierror"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
)

// imageView is an image as clients see it: metadata plus where to fetch it.
type imageView struct {
	imagesrpc.Image
	URL          string `json:"url"`
	ThumbnailURL string `json:"thumbnail_url"`
}

func viewOf(img imagesrpc.Image) imageView {
	return imageView{Image: img, URL: "/v1/images/" + img.ID, ThumbnailURL: "/v1/images/" + img.ID + "/thumbnail"}
}

func imageViews(imgs []imagesrpc.Image) []imageView {
	out := make([]imageView, len(imgs))
	for i, img := range imgs {
		out[i] = viewOf(img)
	}
	return out
}

// multipartOverhead is what a 10 MiB file may carry around it in a form.
const multipartOverhead = 64 << 10

// uploadImage streams the multipart "file" part straight to the images
// service's blob endpoint: the api never holds the file. The owner fields
// must come before the file, as with S3's POST uploads, so the api can check
// the caller may attach images to that owner before any byte is sent.
func (a *API) uploadImage(w http.ResponseWriter, r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return apierror.New(http.StatusUnsupportedMediaType, "Content-Type must be multipart/form-data with fields owner_type, owner_id and file")
	}
	if r.ContentLength > imagesrpc.MaxBytes+multipartOverhead {
		return apierror.New(http.StatusRequestEntityTooLarge, "image exceeds 10 MiB")
	}
	r.Body = http.MaxBytesReader(w, r.Body, imagesrpc.MaxBytes+multipartOverhead)
	mr, err := r.MultipartReader()
	if err != nil {
		return apierror.New(http.StatusBadRequest, "malformed multipart body: "+err.Error())
	}
	fields := map[string]string{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return apierror.New(http.StatusUnprocessableEntity, "file is required")
		}
		if err != nil {
			return multipartError(err)
		}
		switch name := part.FormName(); name {
		case "owner_type", "owner_id":
			v, err := io.ReadAll(io.LimitReader(part, 257))
			if err != nil {
				return multipartError(err)
			}
			if len(v) > 256 {
				return apierror.New(http.StatusUnprocessableEntity, name+" is too long")
			}
			fields[name] = strings.TrimSpace(string(v))
		case "file":
			if err := required([2]string{"owner_type", fields["owner_type"]}, [2]string{"owner_id", fields["owner_id"]}); err != nil {
				return apierror.New(http.StatusUnprocessableEntity, "send owner_type and owner_id before file ("+err.Error()+")")
			}
			if err := a.mayAttach(r.Context(), fields["owner_type"], fields["owner_id"]); err != nil {
				return err
			}
			return a.forwardUpload(w, r, fields, part)
		default:
			return apierror.New(http.StatusBadRequest, "unknown form field "+name+"; expected owner_type, owner_id, file")
		}
	}
}

func multipartError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return apierror.New(http.StatusRequestEntityTooLarge, "image exceeds 10 MiB")
	}
	return apierror.New(http.StatusBadRequest, "malformed multipart body: "+err.Error())
}

// mayAttach checks the caller may add images to the owner: a product's
// creator, a publication's seller, or the user themself.
func (a *API) mayAttach(ctx context.Context, ownerType, ownerID string) error {
	caller := rpcmeta.Caller(ctx)
	switch ownerType {
	case imagesrpc.OwnerUser:
		if ownerID != caller {
			return apierror.New(http.StatusForbidden, "you can only add images to your own user profile")
		}
	case imagesrpc.OwnerProduct:
		p, err := a.products.Get(ctx, productsrpc.GetRequest{ID: ownerID})
		if err != nil {
			return ownerLookup(err, "product", ownerID)
		}
		if p.CreatorID != caller {
			return apierror.New(http.StatusForbidden, "only the product's creator can add its images")
		}
	case imagesrpc.OwnerPublication:
		p, err := a.publications.Get(ctx, ownerID)
		if err != nil {
			return ownerLookup(err, "publication", ownerID)
		}
		if p.SellerID != caller {
			return apierror.New(http.StatusForbidden, "only the publication's seller can add its images")
		}
	default:
		return apierror.New(http.StatusUnprocessableEntity, "owner_type must be one of product, publication, user")
	}
	return nil
}

func ownerLookup(err error, kind, id string) error {
	var me *merrors.Error
	if errors.As(err, &me) && me.Code == http.StatusNotFound {
		return apierror.New(http.StatusUnprocessableEntity, "owner_id: "+kind+" "+id+" does not exist")
	}
	return err
}

func (a *API) forwardUpload(w http.ResponseWriter, r *http.Request, fields map[string]string, file io.Reader) error {
	q := url.Values{"owner_type": {fields["owner_type"]}, "owner_id": {fields["owner_id"]}, "uploader_id": {rpcmeta.Caller(r.Context())}}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, "/internal/images?"+q.Encode(), file)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Request-Id", rpcmeta.RequestID(r.Context()))
	resp, err := a.blobs.Do(r.Context(), imagesrpc.Service, req)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apierror.New(http.StatusRequestEntityTooLarge, "image exceeds 10 MiB")
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return upstreamError(w, resp)
	}
	var img imagesrpc.Image
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&img); err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/images/"+img.ID)
	writeJSON(w, http.StatusCreated, viewOf(img))
	return nil
}

// upstreamError re-issues the images service's error under this request's
// ID; 5xx details stay inside.
func upstreamError(w http.ResponseWriter, resp *http.Response) error {
	if ra := resp.Header.Get("Retry-After"); resp.StatusCode == http.StatusServiceUnavailable && isSeconds(ra) {
		// Up but pacing (its decode budget is taken): say when to come back.
		w.Header().Set("Retry-After", ra)
		return apierror.New(http.StatusServiceUnavailable, "images is busy; retry after "+ra+" s")
	}
	if resp.StatusCode >= 500 {
		return apierror.New(http.StatusServiceUnavailable, "images is unavailable")
	}
	var body apierror.Body
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body)
	msg := body.Error.Message
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return apierror.New(resp.StatusCode, msg)
}

// isSeconds reports a Retry-After in delay-seconds form (1 to 4 digits).
func isSeconds(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n >= 0 && len(v) <= 4
}

func (a *API) imageBytes(w http.ResponseWriter, r *http.Request) error {
	return a.proxyImage(w, r, "/internal/images/"+url.PathEscape(r.PathValue("id")))
}

func (a *API) thumbnailBytes(w http.ResponseWriter, r *http.Request) error {
	return a.proxyImage(w, r, "/internal/images/"+url.PathEscape(r.PathValue("id"))+"/thumbnail")
}

// proxyImage streams bytes from the images service with its caching headers;
// If-None-Match is passed through, so a 304 costs no bytes.
func (a *API) proxyImage(w http.ResponseWriter, r *http.Request, path string) error {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if v := r.Header.Get("If-None-Match"); v != "" {
		req.Header.Set("If-None-Match", v)
	}
	req.Header.Set("X-Request-Id", rpcmeta.RequestID(r.Context()))
	resp, err := a.blobs.Do(r.Context(), imagesrpc.Service, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotModified {
		return upstreamError(w, resp)
	}
	for _, h := range []string{"Content-Type", "Content-Length", "ETag", "Cache-Control", "Last-Modified"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
	return nil
}

var ownerTypes = []string{imagesrpc.OwnerProduct, imagesrpc.OwnerPublication, imagesrpc.OwnerUser}

func (a *API) listImages(w http.ResponseWriter, r *http.Request) error {
	q, size, token, err := listQuery(r)
	if err != nil {
		return err
	}
	ownerType, err := oneOf(q, "owner_type", ownerTypes)
	if err != nil {
		return err
	}
	if err := required([2]string{"owner_type", ownerType}, [2]string{"owner_id", q.Get("owner_id")}); err != nil {
		return apierror.New(http.StatusBadRequest, err.Error())
	}
	page, err := a.images.List(r.Context(), imagesrpc.ListRequest{OwnerType: ownerType, OwnerID: q.Get("owner_id"), PageSize: size, PageToken: token})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": imageViews(page.Items), "next_page_token": page.NextPageToken})
	return nil
}

func (a *API) deleteImage(w http.ResponseWriter, r *http.Request) error {
	if err := a.images.Delete(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
