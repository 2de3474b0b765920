package handler

import (
	"testing"

	merrors "go-micro.dev/v4/errors"

	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

// No free password-hashing slot is a 503 (retry shortly), never a 401 or 500.
func TestBusyIsA503(t *testing.T) {
	err := rpcError(user.ErrBusy, "")
	me, ok := err.(*merrors.Error)
	if !ok || me.Code != 503 || me.Id != id {
		t.Fatalf("rpcError(ErrBusy) = %v, want a 503 of %s", err, id)
	}
}
