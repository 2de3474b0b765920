package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/marketmesh/marketmesh/api/internal/fanout"
	"github.com/marketmesh/marketmesh/contracts/imagesrpc"
	"github.com/marketmesh/marketmesh/contracts/publicationsrpc"
	"github.com/marketmesh/marketmesh/plugins/money"

	"github.com/marketmesh/marketmesh/contracts/usersrpc"
	"github.com/marketmesh/marketmesh/plugins/apierror"
)

type registerBody struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

func (a *API) register(w http.ResponseWriter, r *http.Request) error {
	var b registerBody
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	if err := required([2]string{"email", b.Email}, [2]string{"password", b.Password}, [2]string{"name", b.Name}); err != nil {
		return err
	}
	// Every well-formed sign-up counts, taken or not: the limit bounds
	// account farming and probing which emails are registered.
	if err := a.registrations.Allow(a.clientAddr(r)); err != nil {
		return a.tooMany(w, err, "sign-ups from this address")
	}
	u, err := a.users.Register(r.Context(), usersrpc.RegisterRequest(b))
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/users/"+u.ID)
	writeJSON(w, http.StatusCreated, u)
	return nil
}

type loginBody struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// tokenResponse is the answer of login and refresh: a short-lived access
// token (a JWT for Authorization: Bearer) and the refresh token that gets
// the next one, with the fields of an OAuth 2.0 token response (RFC 6749
// §5.1) beside ours.
type tokenResponse struct {
	Token     string    `json:"token"`
	TokenType string    `json:"token_type"` // always "Bearer"
	ExpiresAt time.Time `json:"expires_at"`
	ExpiresIn int64     `json:"expires_in"` // the token's lifetime in seconds
	// RefreshToken is exchanged at POST /v1/auth/refresh for a new pair;
	// each works once.
	RefreshToken          string        `json:"refresh_token"`
	RefreshTokenExpiresAt time.Time     `json:"refresh_token_expires_at"`
	User                  usersrpc.User `json:"user"`
}

func (a *API) login(w http.ResponseWriter, r *http.Request) error {
	var b loginBody
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	if err := required([2]string{"email", b.Email}, [2]string{"password", b.Password}); err != nil {
		return err
	}
	// Throttled per client address and account without locking the owner
	// out: see package ratelimit for the scheme.
	attempt, err := a.logins.Begin(a.clientAddr(r), b.Email)
	if err != nil {
		return a.tooMany(w, err, "login attempts")
	}
	s, err := a.users.Login(r.Context(), usersrpc.AuthenticateRequest(b))
	if err != nil {
		if status, _ := apierror.Status(err); status == http.StatusUnauthorized {
			attempt.Failed()
		} else {
			attempt.Void() // no verdict on the password
		}
		return err
	}
	attempt.Succeeded()
	return a.writeTokens(w, s)
}

// writeTokens answers a new access token for the session's user, with the
// session's refresh token. Roles are granted anew each time: an operator
// removed from API_ADMIN_USERS gets none at the next refresh.
func (a *API) writeTokens(w http.ResponseWriter, s *usersrpc.Session) error {
	if s.User.ID == "" || s.RefreshToken == "" {
		return fmt.Errorf("users answered a session without a user or a refresh token")
	}
	token, exp, err := a.signer.Issue(s.User.ID, a.rolesOf(s.User.ID)...)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, tokenResponse{
		Token: token, TokenType: "Bearer", ExpiresAt: exp, ExpiresIn: int64(a.signer.TTL() / time.Second),
		RefreshToken: s.RefreshToken, RefreshTokenExpiresAt: s.RefreshExpiresAt, User: s.User,
	})
	return nil
}

// refreshBody is the body of refresh and logout.
type refreshBody struct {
	RefreshToken string `json:"refresh_token"`
}

// maxRefreshToken bounds the refresh_token sent: ours are 43 characters, so
// anything much longer is refused here rather than carried to the users
// service.
const maxRefreshToken = 256

// decodeRefresh reads a refresh or logout body and takes a token from the
// client address's budget.
func (a *API) decodeRefresh(w http.ResponseWriter, r *http.Request, what string) (string, error) {
	var b refreshBody
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return "", err
	}
	if err := required([2]string{"refresh_token", b.RefreshToken}); err != nil {
		return "", err
	}
	// Every well-formed attempt counts, good token or not.
	if err := a.refreshes.Allow(a.clientAddr(r)); err != nil {
		return "", a.tooMany(w, err, what+" from this address")
	}
	if len(b.RefreshToken) > maxRefreshToken {
		return "", apierror.New(http.StatusUnauthorized, "refresh token is not valid: log in again")
	}
	return b.RefreshToken, nil
}

// refresh exchanges a refresh token for a new access token and a new
// refresh token; the one presented is spent. A spent token presented again
// revokes its session (the users service decides: package session there).
func (a *API) refresh(w http.ResponseWriter, r *http.Request) error {
	token, err := a.decodeRefresh(w, r, "token refreshes")
	if err != nil {
		return err
	}
	s, err := a.users.Refresh(r.Context(), token)
	if err != nil {
		return err
	}
	return a.writeTokens(w, s)
}

// logout revokes the session of a refresh token. Access tokens already
// issued stay valid until they expire (at most the token TTL).
func (a *API) logout(w http.ResponseWriter, r *http.Request) error {
	token, err := a.decodeRefresh(w, r, "logouts")
	if err != nil {
		return err
	}
	if err := a.users.Logout(r.Context(), token); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) me(w http.ResponseWriter, r *http.Request) error {
	u, err := a.users.Me(r.Context())
	if err != nil {
		return callerGone(w, err)
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// callerGone maps the users service's "not found" about the caller's own
// account (Me, Update: the only user they look up is the caller) to 401: the
// token is valid but its account no longer exists, so the client must log
// in again, not conclude that /v1/users/me is missing.
func callerGone(w http.ResponseWriter, err error) error {
	if status, _ := apierror.Status(err); status == http.StatusNotFound {
		w.Header().Set("WWW-Authenticate", `Bearer realm="marketmesh", error="invalid_token"`)
		return apierror.New(http.StatusUnauthorized, "the account of this token no longer exists: log in again")
	}
	return err
}

type updateMeBody struct {
	Name  *string `json:"name"`
	Phone *string `json:"phone"`
}

func (a *API) updateMe(w http.ResponseWriter, r *http.Request) error {
	var b updateMeBody
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	if b.Name == nil && b.Phone == nil {
		return apierror.New(http.StatusUnprocessableEntity, "nothing to update: send name and/or phone")
	}
	u, err := a.users.Update(r.Context(), usersrpc.UpdateRequest{Name: b.Name, Phone: b.Phone})
	if err != nil {
		return callerGone(w, err)
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// sellerProfile is GET /v1/users/{id}: the public profile and how many
// active publications the user has.
type sellerProfile struct {
	usersrpc.PublicProfile
	PublicationCount *int64   `json:"publication_count"` // null when publications is unavailable
	Partial          bool     `json:"partial"`
	Unavailable      []string `json:"unavailable"`
}

func (a *API) profile(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var out sellerProfile
	parts := fanout.New(r.Context())
	parts.Core("user", func(ctx context.Context) error {
		p, err := a.users.Profile(ctx, id)
		if err == nil {
			out.PublicProfile = *p
		}
		return err
	})
	parts.Optional("publications", a.opts.PartTimeout, func(ctx context.Context) error {
		c, err := a.publications.Count(ctx, publicationsrpc.CountRequest{SellerID: id, Status: publicationsrpc.StatusActive})
		if err == nil {
			out.PublicationCount = &c.Count
		}
		return err
	})
	if err := parts.Wait(); err != nil {
		return err
	}
	out.Partial, out.Unavailable = parts.Missing()
	out.Unavailable = nonNil(out.Unavailable)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// wishlistEntry is one wishlist item with what a buyer wants to see of it.
type wishlistEntry struct {
	PublicationID string       `json:"publication_id"`
	AddedAt       time.Time    `json:"added_at"`
	Title         string       `json:"title,omitempty"`
	Price         *money.Money `json:"price,omitempty"`
	Active        *bool        `json:"active,omitempty"` // still listed and in stock
	Image         *imageView   `json:"image,omitempty"`
}

type wishlistPage struct {
	Items         []wishlistEntry `json:"items"`
	NextPageToken string          `json:"next_page_token"`
	Partial       bool            `json:"partial"`
	Unavailable   []string        `json:"unavailable"`
}

func (a *API) listWishlist(w http.ResponseWriter, r *http.Request) error {
	_, size, token, err := listQuery(r)
	if err != nil {
		return err
	}
	page, err := a.users.ListWishlist(r.Context(), usersrpc.PageRequest{PageSize: size, PageToken: token})
	if err != nil {
		return err
	}
	// An ID publications would refuse (saved before IDs were checked) is a
	// line that is gone, not a reason to fail the publications part.
	ids := slices.DeleteFunc(uniqueIDs(page.Items, func(it usersrpc.WishlistItem) string { return it.PublicationID }),
		func(id string) bool { return checkPublicationID(id) != nil })
	var pubs map[string]publicationsrpc.Publication
	if len(ids) == 0 {
		pubs = map[string]publicationsrpc.Publication{} // nothing to look up: every line is gone
	}
	var imgs map[string]imagesrpc.Image
	parts := fanout.New(r.Context())
	a.publicationsPart(parts, ids, &pubs)
	a.firstImagesPart(parts, ids, &imgs)
	_ = parts.Wait() // optional parts only
	out := wishlistPage{Items: make([]wishlistEntry, len(page.Items)), NextPageToken: page.NextPageToken}
	for i, it := range page.Items {
		e := wishlistEntry{PublicationID: it.PublicationID, AddedAt: it.AddedAt, Image: imageOf(imgs, it.PublicationID)}
		if pubs != nil {
			active := false
			if p, ok := pubs[it.PublicationID]; ok {
				e.Title, e.Price = p.Title, &p.Price
				active = p.Status == publicationsrpc.StatusActive && p.Quantity > 0
			}
			e.Active = &active
		}
		out.Items[i] = e
	}
	out.Partial, out.Unavailable = parts.Missing()
	out.Unavailable = nonNil(out.Unavailable)
	writeJSON(w, http.StatusOK, out)
	return nil
}

type wishlistBody struct {
	PublicationID string `json:"publication_id"`
}

func (a *API) addWishlist(w http.ResponseWriter, r *http.Request) error {
	var b wishlistBody
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	if err := checkPublicationID(b.PublicationID); err != nil {
		return err
	}
	// Only a publication that exists may be saved: publications' 404 is
	// the answer, and publications down is its 503 (nothing is saved).
	if _, err := a.publications.Get(r.Context(), b.PublicationID); err != nil {
		if gone(err) == nil {
			return apierror.New(http.StatusNotFound, "publication "+b.PublicationID+" not found")
		}
		return err
	}
	res, err := a.users.AddWishlist(r.Context(), b.PublicationID)
	if err != nil {
		return err
	}
	writeJSON(w, createdOrOK(res.Created), res.Item)
	return nil
}

func (a *API) removeWishlist(w http.ResponseWriter, r *http.Request) error {
	if err := a.users.RemoveWishlist(r.Context(), r.PathValue("publication_id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listBankAccounts(w http.ResponseWriter, r *http.Request) error {
	_, size, token, err := listQuery(r)
	if err != nil {
		return err
	}
	page, err := a.users.ListBankAccounts(r.Context(), usersrpc.PageRequest{PageSize: size, PageToken: token})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

type bankAccountBody struct {
	Holder        string `json:"holder"`
	Bank          string `json:"bank"`
	AccountNumber string `json:"account_number"`
	Currency      string `json:"currency"`
}

func (a *API) addBankAccount(w http.ResponseWriter, r *http.Request) error {
	var b bankAccountBody
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	acct, err := a.users.AddBankAccount(r.Context(), usersrpc.AddBankAccountRequest(b))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, acct)
	return nil
}

func (a *API) removeBankAccount(w http.ResponseWriter, r *http.Request) error {
	if err := a.users.RemoveBankAccount(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listDevices(w http.ResponseWriter, r *http.Request) error {
	_, size, token, err := listQuery(r)
	if err != nil {
		return err
	}
	page, err := a.users.ListDevices(r.Context(), usersrpc.PageRequest{PageSize: size, PageToken: token})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

type deviceBody struct {
	Token    string `json:"token"`
	Platform string `json:"platform"`
}

func (a *API) addDevice(w http.ResponseWriter, r *http.Request) error {
	var b deviceBody
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	res, err := a.users.AddDevice(r.Context(), usersrpc.AddDeviceRequest(b))
	if err != nil {
		return err
	}
	writeJSON(w, createdOrOK(res.Created), res.Device)
	return nil
}

func (a *API) removeDevice(w http.ResponseWriter, r *http.Request) error {
	if err := a.users.RemoveDevice(r.Context(), r.PathValue("token")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) preferences(w http.ResponseWriter, r *http.Request) error {
	p, err := a.users.Preferences(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// preferencesBody uses pointers so a missing field is an error, not false.
type preferencesBody struct {
	Email *bool `json:"email"`
	Push  *bool `json:"push"`
}

func (a *API) setPreferences(w http.ResponseWriter, r *http.Request) error {
	var b preferencesBody
	if err := decodeJSON(w, r, a.opts.MaxBody, &b); err != nil {
		return err
	}
	if b.Email == nil || b.Push == nil {
		return apierror.New(http.StatusUnprocessableEntity, "email and push are both required (true or false)")
	}
	p, err := a.users.SetPreferences(r.Context(), usersrpc.Preferences{Email: *b.Email, Push: *b.Push})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// checkPublicationID refuses (422) a publication_id that no service would
// take as an ID: empty, over 64 bytes, not UTF-8, or with '/', white space
// or control characters (the users domain's rule, which publications'
// is wider than).
func checkPublicationID(id string) error {
	if err := required([2]string{"publication_id", id}); err != nil {
		return err
	}
	bad := func(r rune) bool { return r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) }
	if len(id) > 64 || !utf8.ValidString(id) || strings.ContainsFunc(id, bad) {
		return apierror.New(http.StatusUnprocessableEntity, fmt.Sprintf("publication_id %q is not a valid ID", quote(id)))
	}
	return nil
}

func createdOrOK(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}
