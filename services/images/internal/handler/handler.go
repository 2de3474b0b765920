// Package handler serves the images service: the RPC metadata endpoints
// (Images) and the internal HTTP blob endpoint (Blobs) for uploads and bytes.
package handler

import (
	"context"

	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/plugins/rpcmeta"
	"github.com/marketmesh/marketmesh/services/images/internal/imaging"
	"github.com/marketmesh/marketmesh/services/images/internal/store"
)

// Images is the RPC handler; its type name makes endpoints "Images.<Method>".
type Images struct {
	store *store.Store
}

// New returns the RPC handler.
func New(s *store.Store) *Images { return &Images{store: s} }

func pageSize(n int) int {
	switch {
	case n <= 0:
		return 20
	case n > 100:
		return 100
	}
	return n
}

// Get returns one image's metadata.
func (h *Images) Get(ctx context.Context, req *imagesrpc.IDRequest, rsp *imagesrpc.Image) error {
	im, err := h.store.Get(req.ID)
	if err != nil {
		return rpcError(ctx, err, "image "+req.ID+" not found")
	}
	*rsp = im.RPC()
	return nil
}

// List returns a page of an owner's images, oldest first.
func (h *Images) List(ctx context.Context, req *imagesrpc.ListRequest, rsp *imagesrpc.ListResponse) error {
	owner, err := imaging.CheckOwner(req.OwnerType, req.OwnerID)
	if err != nil {
		return rpcError(ctx, err, "")
	}
	ims, next, err := h.store.List(owner.Type, owner.ID, pageSize(req.PageSize), req.PageToken)
	if err != nil {
		return rpcError(ctx, err, "")
	}
	rsp.Items = make([]imagesrpc.Image, len(ims))
	for i, im := range ims {
		rsp.Items[i] = im.RPC()
	}
	rsp.NextPageToken = next
	return nil
}

// First returns the oldest image of each named owner that has one.
func (h *Images) First(ctx context.Context, req *imagesrpc.FirstRequest, rsp *imagesrpc.FirstResponse) error {
	if err := imaging.CheckOwnerIDs(req.OwnerType, req.OwnerIDs); err != nil {
		return rpcError(ctx, err, "")
	}
	found, err := h.store.First(req.OwnerType, req.OwnerIDs)
	if err != nil {
		return rpcError(ctx, err, "")
	}
	rsp.Images = make(map[string]imagesrpc.Image, len(found))
	for owner, im := range found {
		rsp.Images[owner] = im.RPC()
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
	_, err := h.store.Delete(req.ID, func(im imaging.Image) error {
		if im.UploaderID != uid {
			return imaging.Forbidden("only the uploader may delete image %s", im.ID)
		}
		return nil
	})
	return rpcError(ctx, err, "image "+req.ID+" not found")
}
