package server

import (
	"context"
	"slices"

	"github.com/marketmesh/marketmesh/api/internal/fanout"
	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
)

// The optional parts that several aggregated reads share. Each adds its
// part to g only when there are IDs to look up, and writes its result only
// when the part succeeds: a nil map after g.Wait means the part was missing
// (or not needed).

// publicationsPart adds the optional part "publications": the publications
// with the given IDs, by ID (unknown IDs are absent).
func (a *API) publicationsPart(g *fanout.Group, ids []string, into *map[string]publicationsrpc.Publication) {
	if len(ids) == 0 {
		return
	}
	g.Optional("publications", a.opts.PartTimeout, func(ctx context.Context) error {
		res, err := a.publications.GetMany(ctx, ids)
		if err != nil {
			return err
		}
		m := make(map[string]publicationsrpc.Publication, len(res.Items))
		for _, p := range res.Items {
			m[p.ID] = p
		}
		*into = m
		return nil
	})
}

// firstImagesPart adds the optional part "images": the first image of each
// publication with one, by publication ID.
func (a *API) firstImagesPart(g *fanout.Group, ids []string, into *map[string]imagesrpc.Image) {
	if len(ids) == 0 {
		return
	}
	g.Optional("images", a.opts.PartTimeout, func(ctx context.Context) error {
		res, err := a.images.First(ctx, imagesrpc.FirstRequest{OwnerType: imagesrpc.OwnerPublication, OwnerIDs: ids})
		if err != nil {
			return err
		}
		*into = res.Images
		if *into == nil {
			*into = map[string]imagesrpc.Image{}
		}
		return nil
	})
}

// imageOf returns the view of id's image in imgs, or nil.
func imageOf(imgs map[string]imagesrpc.Image, id string) *imageView {
	img, ok := imgs[id]
	if !ok {
		return nil
	}
	v := viewOf(img)
	return &v
}

// uniqueIDs returns the distinct IDs that id picks from items, in order.
func uniqueIDs[T any](items []T, id func(T) string) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		if s := id(it); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
