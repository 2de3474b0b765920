package usersrpc

import (
	"context"

	"go-micro.dev/v4/client"

	"github.com/marketmesh/marketmesh/plugins/rpcclient"
)

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
