// Package usersrpc is the users service's contract: the types of its RPC
// endpoints and a typed Client. Other modules import this package only; the
// service's internals stay in internal/.
//
// Calls that act on "the caller" take the user from RPC metadata
// (rpcmeta.WithCaller), which only the api sets after verifying a token.
package usersrpc

import (
	"context"
	"time"

	"go-micro.dev/v4/client"

	"github.com/marketmesh/marketmesh/plugins/rpcclient"
)

// Service is the registry name of the users service.
const Service = "marketmesh.users"

// Topic names of the events the users service publishes.
const (
	TopicUserRegistered = "user.registered"
)

// User is a user as its owner sees it.
type User struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Phone     string    `json:"phone"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// PublicProfile is what anyone may see of a user (a seller).
type PublicProfile struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	MemberSince time.Time `json:"member_since"`
}

// UserRegistered is the payload of TopicUserRegistered.
type UserRegistered struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
	Name   string `json:"name"`
}

// RegisterRequest creates an account.
type RegisterRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

// AuthenticateRequest checks credentials.
type AuthenticateRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// Session is the answer to Login and Refresh: the account and a new refresh
// token. The token is handed out once, here: the users service keeps only
// its SHA-256.
type Session struct {
	User User `json:"user"`
	// RefreshToken is exchanged (Refresh) for the next one; each works once.
	RefreshToken string `json:"refresh_token"`
	// RefreshExpiresAt is when RefreshToken expires unless used.
	RefreshExpiresAt time.Time `json:"refresh_expires_at"`
}

// RefreshRequest carries a refresh token from Login or Refresh.
type RefreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// ProfileRequest names a user.
type ProfileRequest struct {
	ID string `json:"id"`
}

// UpdateRequest changes the caller's profile; nil fields stay as they are.
type UpdateRequest struct {
	Name  *string `json:"name,omitempty"`
	Phone *string `json:"phone,omitempty"`
}

// PageRequest asks for one page of a list.
type PageRequest struct {
	PageSize  int    `json:"page_size"`
	PageToken string `json:"page_token"`
}

// WishlistItem is one saved publication.
type WishlistItem struct {
	PublicationID string    `json:"publication_id"`
	AddedAt       time.Time `json:"added_at"`
}

// WishlistPage is a page of the caller's wishlist.
type WishlistPage struct {
	Items         []WishlistItem `json:"items"`
	NextPageToken string         `json:"next_page_token"`
}

// WishlistRequest names a publication in the caller's wishlist.
type WishlistRequest struct {
	PublicationID string `json:"publication_id"`
}

// WishlistAdded is the answer to adding: Created is false when it was there already.
type WishlistAdded struct {
	Item    WishlistItem `json:"item"`
	Created bool         `json:"created"`
}

// BankAccount is a payout account; AccountNumber is always masked ("****6789").
type BankAccount struct {
	ID            string    `json:"id"`
	Holder        string    `json:"holder"`
	Bank          string    `json:"bank"`
	AccountNumber string    `json:"account_number"`
	Currency      string    `json:"currency"`
	CreatedAt     time.Time `json:"created_at"`
}

// AddBankAccountRequest carries the full number, which is encrypted at rest
// and never returned.
type AddBankAccountRequest struct {
	Holder        string `json:"holder"`
	Bank          string `json:"bank"`
	AccountNumber string `json:"account_number"`
	Currency      string `json:"currency"`
}

// BankAccountPage is a page of the caller's bank accounts.
type BankAccountPage struct {
	Items         []BankAccount `json:"items"`
	NextPageToken string        `json:"next_page_token"`
}

// IDRequest names a resource of the caller by ID.
type IDRequest struct {
	ID string `json:"id"`
}

// Device is a push notification target (an FCM registration token).
type Device struct {
	Token     string    `json:"token"`
	Platform  string    `json:"platform"`
	CreatedAt time.Time `json:"created_at"`
}

// AddDeviceRequest registers a device for the caller.
type AddDeviceRequest struct {
	Token    string `json:"token"`
	Platform string `json:"platform"`
}

// DeviceAdded is the answer to adding: Created is false when it was there already.
type DeviceAdded struct {
	Device  Device `json:"device"`
	Created bool   `json:"created"`
}

// DeviceRequest names one of the caller's devices.
type DeviceRequest struct {
	Token string `json:"token"`
}

// DevicePage is a page of the caller's devices.
type DevicePage struct {
	Items         []Device `json:"items"`
	NextPageToken string   `json:"next_page_token"`
}

// Preferences say which channels may notify the caller.
type Preferences struct {
	Email bool `json:"email"`
	Push  bool `json:"push"`
}

// RecipientRequest names a user to notify. Only the notifications service
// may ask.
type RecipientRequest struct {
	UserID string `json:"user_id"`
}

// Recipient is what the notifications service needs to reach a user: the
// address, the channels they allow, and every device token.
type Recipient struct {
	UserID      string      `json:"user_id"`
	Email       string      `json:"email"`
	Name        string      `json:"name"`
	Preferences Preferences `json:"preferences"`
	Devices     []Device    `json:"devices"`
}

// RemoveDeviceTokenRequest drops a token the push provider reported invalid.
// Only the notifications service may ask.
type RemoveDeviceTokenRequest struct {
	UserID string `json:"user_id"`
	Token  string `json:"token"`
}

// Empty is the request or answer of calls that carry nothing.
type Empty struct{}

// Client calls the users service through the shared client stack.
type Client struct{ c client.Client }

// NewClient returns a typed client over c (from rpcclient.New).
func NewClient(c client.Client) *Client { return &Client{c: c} }

func call[Rsp any](ctx context.Context, c client.Client, endpoint string, req any, opts ...client.CallOption) (*Rsp, error) {
	return rpcclient.Call[Rsp](ctx, c, Service, "Users."+endpoint, req, opts...)
}

var read = rpcclient.Read()

// Register creates an account (email unique) and emits user.registered.
func (c *Client) Register(ctx context.Context, r RegisterRequest) (*User, error) {
	return call[User](ctx, c.c, "Register", &r)
}

// Authenticate returns the user whose credentials these are.
func (c *Client) Authenticate(ctx context.Context, r AuthenticateRequest) (*User, error) {
	return call[User](ctx, c.c, "Authenticate", &r)
}

// Login checks credentials, as Authenticate does, and starts a session: the
// answer carries the account and the session's first refresh token. Only
// the api may call it.
func (c *Client) Login(ctx context.Context, r AuthenticateRequest) (*Session, error) {
	return call[Session](ctx, c.c, "Login", &r)
}

// Refresh exchanges a refresh token for the next one of its session (the
// one presented is spent) and returns the account with it. Presenting a
// spent token revokes its whole session. Every refusal (a token unknown,
// expired, spent or revoked, or its account deleted) is 401. Never retried:
// a retry of a refresh that went through would be a reuse. Only the api may
// call it.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (*Session, error) {
	return call[Session](ctx, c.c, "Refresh", &RefreshRequest{RefreshToken: refreshToken})
}

// Logout revokes the session of a refresh token: none of its tokens works
// again. A session already revoked is not an error; a token unknown,
// expired or spent is 401 (a spent one revokes its session too). Only the
// api may call it.
func (c *Client) Logout(ctx context.Context, refreshToken string) error {
	_, err := call[Empty](ctx, c.c, "Logout", &RefreshRequest{RefreshToken: refreshToken})
	return err
}

// Me returns the caller.
func (c *Client) Me(ctx context.Context) (*User, error) {
	return call[User](ctx, c.c, "Me", &Empty{}, read)
}

// Update changes the caller's name or phone.
func (c *Client) Update(ctx context.Context, r UpdateRequest) (*User, error) {
	return call[User](ctx, c.c, "Update", &r)
}

// Profile returns a user's public profile.
func (c *Client) Profile(ctx context.Context, id string) (*PublicProfile, error) {
	return call[PublicProfile](ctx, c.c, "Profile", &ProfileRequest{ID: id}, read)
}

// ListWishlist returns a page of the caller's wishlist.
func (c *Client) ListWishlist(ctx context.Context, p PageRequest) (*WishlistPage, error) {
	return call[WishlistPage](ctx, c.c, "ListWishlist", &p, read)
}

// AddWishlist saves a publication in the caller's wishlist.
func (c *Client) AddWishlist(ctx context.Context, publicationID string) (*WishlistAdded, error) {
	return call[WishlistAdded](ctx, c.c, "AddWishlist", &WishlistRequest{PublicationID: publicationID})
}

// RemoveWishlist removes a publication from the caller's wishlist.
func (c *Client) RemoveWishlist(ctx context.Context, publicationID string) error {
	_, err := call[Empty](ctx, c.c, "RemoveWishlist", &WishlistRequest{PublicationID: publicationID})
	return err
}

// ListBankAccounts returns a page of the caller's bank accounts, masked.
func (c *Client) ListBankAccounts(ctx context.Context, p PageRequest) (*BankAccountPage, error) {
	return call[BankAccountPage](ctx, c.c, "ListBankAccounts", &p, read)
}

// AddBankAccount stores a payout account for the caller.
func (c *Client) AddBankAccount(ctx context.Context, r AddBankAccountRequest) (*BankAccount, error) {
	return call[BankAccount](ctx, c.c, "AddBankAccount", &r)
}

// RemoveBankAccount deletes one of the caller's bank accounts.
func (c *Client) RemoveBankAccount(ctx context.Context, id string) error {
	_, err := call[Empty](ctx, c.c, "RemoveBankAccount", &IDRequest{ID: id})
	return err
}

// ListDevices returns a page of the caller's devices.
func (c *Client) ListDevices(ctx context.Context, p PageRequest) (*DevicePage, error) {
	return call[DevicePage](ctx, c.c, "ListDevices", &p, read)
}

// AddDevice registers a push token for the caller.
func (c *Client) AddDevice(ctx context.Context, r AddDeviceRequest) (*DeviceAdded, error) {
	return call[DeviceAdded](ctx, c.c, "AddDevice", &r)
}

// RemoveDevice unregisters one of the caller's push tokens.
func (c *Client) RemoveDevice(ctx context.Context, token string) error {
	_, err := call[Empty](ctx, c.c, "RemoveDevice", &DeviceRequest{Token: token})
	return err
}

// Preferences returns the caller's notification preferences.
func (c *Client) Preferences(ctx context.Context) (*Preferences, error) {
	return call[Preferences](ctx, c.c, "GetPreferences", &Empty{}, read)
}

// SetPreferences replaces the caller's notification preferences.
func (c *Client) SetPreferences(ctx context.Context, p Preferences) (*Preferences, error) {
	return call[Preferences](ctx, c.c, "SetPreferences", &p)
}

// Recipient reads how to reach a user (notifications service only).
func (c *Client) Recipient(ctx context.Context, userID string) (*Recipient, error) {
	return call[Recipient](ctx, c.c, "Recipient", &RecipientRequest{UserID: userID}, read)
}

// RemoveDeviceToken drops a user's device token that the push provider
// reported unregistered or invalid (notifications service only). Removing a
// token that is not there succeeds.
func (c *Client) RemoveDeviceToken(ctx context.Context, userID, token string) error {
	_, err := call[Empty](ctx, c.c, "RemoveDeviceToken", &RemoveDeviceTokenRequest{UserID: userID, Token: token})
	return err
}
