package paging

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"
)

// ErrBadToken is returned for a page token this scope did not issue.
var ErrBadToken = errors.New("page_token is not one this list issued")

// Page token layout (then unpadded base64url):
//
//	[0]    version (1)
//	[1:5]  FNV-1a 32 of each scope part and the position, each followed by NUL
//	[5:]   the position: the last key of the page (non-empty)
//
// The checksum makes a token issued for another list or owner, or made up,
// ErrBadToken rather than a silent seek. It is not a secret: positions are
// not hidden from their owner.
const tokenVersion = 1

func tokenSum(scope [][]byte, pos []byte) uint32 {
	h := fnv.New32a()
	for _, p := range append(scope, pos) {
		h.Write(p)
		h.Write([]byte{0})
	}
	return h.Sum32()
}

// EncodeToken returns the page token for the list named by scope (e.g. the
// bucket and the owner) that resumes after pos.
func EncodeToken(pos []byte, scope ...[]byte) string {
	b := make([]byte, 0, 5+len(pos))
	b = append(b, tokenVersion)
	b = binary.BigEndian.AppendUint32(b, tokenSum(scope, pos))
	return base64.RawURLEncoding.EncodeToString(append(b, pos...))
}

// DecodeToken returns the position a token of the list named by scope
// resumes after.
func DecodeToken(token string, scope ...[]byte) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 6 || b[0] != tokenVersion {
		return nil, ErrBadToken
	}
	pos := b[5:]
	if binary.BigEndian.Uint32(b[1:5]) != tokenSum(scope, pos) {
		return nil, ErrBadToken
	}
	return pos, nil
}
