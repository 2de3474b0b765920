package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/marketmesh/marketmesh/plugins/apierror"
	"github.com/marketmesh/marketmesh/plugins/validate"
)

// decodeJSON reads exactly one JSON object into dst, refusing anything a
// strict API should: another content type (415), an oversize body (413),
// malformed JSON, unknown fields, wrong types and trailing data (400). The
// messages name the offending field.
func decodeJSON(w http.ResponseWriter, r *http.Request, maxBytes int64, dst any) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err, maxBytes)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return decodeError(err, maxBytes)
		}
		return apierror.New(http.StatusBadRequest, "request body must contain a single JSON object")
	}
	return nil
}

// requireJSON refuses a request whose body is not declared application/json
// in UTF-8 (no charset, or charset=utf-8) with 415.
func requireJSON(r *http.Request) error {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return apierror.New(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return apierror.New(http.StatusUnsupportedMediaType, fmt.Sprintf("charset %q is not supported: send UTF-8 JSON (charset=utf-8 or no charset)", quote(cs)))
	}
	return nil
}

func decodeError(err error, maxBytes int64) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		mbe    *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return apierror.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", maxBytes))
	case errors.Is(err, io.EOF):
		return apierror.New(http.StatusBadRequest, "request body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apierror.New(http.StatusBadRequest, "malformed JSON: unexpected end of input")
	case errors.As(err, &syntax):
		return apierror.New(http.StatusBadRequest, fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, syntax))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return apierror.New(http.StatusBadRequest, "request body must be a JSON object")
		}
		return apierror.New(http.StatusBadRequest, fmt.Sprintf("field %q must be %s, not %s", quote(typ.Field), jsonType(typ.Type.Kind().String()), quote(typ.Value)))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return apierror.New(http.StatusBadRequest, fmt.Sprintf("unknown field %q", quote(name)))
	default:
		return apierror.New(http.StatusBadRequest, "malformed JSON: "+err.Error())
	}
}

// quote shortens a piece of the client's input for an error message.
func quote(s string) string { return validate.Shorten(s, 64) }

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int64", "int32", "uint", "uint32", "uint64", "float64":
		return "a number"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	}
	return kind
}

// required returns a 422 naming the first empty field, in the order given.
func required(fields ...[2]string) error {
	for _, f := range fields {
		if strings.TrimSpace(f[1]) == "" {
			return apierror.New(http.StatusUnprocessableEntity, f[0]+" is required")
		}
	}
	return nil
}

// listQuery parses the query string strictly (URL.Query would drop malformed
// pairs silently; a client must hear about them) and reads page_size
// (1..100, default 20) and page_token.
func listQuery(r *http.Request) (url.Values, int, string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, 0, "", apierror.New(http.StatusBadRequest, "malformed query string: "+err.Error())
	}
	size := 20
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return nil, 0, "", apierror.New(http.StatusBadRequest, "page_size must be an integer from 1 to 100")
		}
		size = n
	}
	token := q.Get("page_token")
	if len(token) > 512 {
		return nil, 0, "", apierror.New(http.StatusBadRequest, "page_token is not valid")
	}
	return q, size, token, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeJSONBytes is writeJSON for a document already encoded as writeJSON
// would (json.Encoder's output: compact, with a trailing newline).
func writeJSONBytes(w http.ResponseWriter, status int, doc []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(doc)
}
