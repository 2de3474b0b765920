// Package handler serves the images service: the RPC metadata endpoints
// (Images) and the internal HTTP blob endpoint (Blobs) for uploads and bytes.
// Each endpoint decodes, applies the domain rules (package image), stores
// and encodes; reads are open to anyone, a delete acts for the caller in RPC
// metadata.
package handler

import (
	"context"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/services/images/internal/image"
	"github.com/marketmesh/marketmesh/services/images/internal/store"
)

// Images is the RPC handler; its type name makes endpoints "Images.<Method>".
type Images struct {
	store *store.Store
}

// New returns the RPC handler.
func New(s *store.Store) *Images { return &Images{store: s} }

func notFound(id string) string { return "image " + id + " not found" }

// toImage is the contract view of an image: its original's description.
func toImage(im image.Image) imagesrpc.Image {
	return imagesrpc.Image{
		ID: im.ID, OwnerType: im.OwnerType, OwnerID: im.OwnerID, UploaderID: im.UploaderID,
		ContentType: im.Original.ContentType, Bytes: im.Original.Bytes,
		Width: im.Original.Width, Height: im.Original.Height,
		SHA256: im.Original.SHA256, CreatedAt: im.CreatedAt,
	}
}

// Get returns one image's metadata.
func (h *Images) Get(ctx context.Context, req *imagesrpc.IDRequest, rsp *imagesrpc.Image) error {
	im, err := h.store.Get(req.ID)
	if err != nil {
		return rpcError(ctx, err, notFound(req.ID))
	}
	*rsp = toImage(im)
	return nil
}

// List returns a page of an owner's images, oldest first.
func (h *Images) List(ctx context.Context, req *imagesrpc.ListRequest, rsp *imagesrpc.ListResponse) error {
	q, err := image.ListQuery{
		OwnerType: req.OwnerType, OwnerID: req.OwnerID, PageSize: req.PageSize, PageToken: req.PageToken,
	}.Normalize()
	if err != nil {
		return rpcError(ctx, err, "")
	}
	ims, next, err := h.store.List(q.OwnerType, q.OwnerID, q.PageSize, q.PageToken)
	if err != nil {
		return rpcError(ctx, err, "")
	}
	rsp.Items = make([]imagesrpc.Image, len(ims))
	for i, im := range ims {
		rsp.Items[i] = toImage(im)
	}
	rsp.NextPageToken = next
	return nil
}

// First returns the oldest image of each named owner that has one.
func (h *Images) First(ctx context.Context, req *imagesrpc.FirstRequest, rsp *imagesrpc.FirstResponse) error {
	if err := image.CheckOwnerIDs(req.OwnerType, req.OwnerIDs); err != nil {
		return rpcError(ctx, err, "")
	}
	found, err := h.store.First(req.OwnerType, req.OwnerIDs)
	if err != nil {
		return rpcError(ctx, err, "")
	}
	rsp.Images = make(map[string]imagesrpc.Image, len(found))
	for owner, im := range found {
		rsp.Images[owner] = toImage(im)
	}
	return nil
}

// Delete removes one of the caller's uploads; its blobs go when no other
// image references them.
func (h *Images) Delete(ctx context.Context, req *imagesrpc.IDRequest, _ *imagesrpc.Empty) error {
	uid := rpcmeta.Caller(ctx)
	if uid == "" {
		return rpcError(ctx, errNoCaller, "")
	}
	_, err := h.store.Delete(req.ID, func(im image.Image) error { return im.CheckUploader(uid) })
	return rpcError(ctx, err, notFound(req.ID))
}
