package saasfake

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWTBearerGrant is the grant_type of a service account's token request (RFC 7523).
const JWTBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// TokenLifetime is how long an access token of the OAuth fake is valid, as Google's.
const TokenLifetime = time.Hour

// OAuth fakes Google's OAuth 2.0 token endpoint for service accounts:
// POST /token with the form grant_type=<JWTBearerGrant>&assertion=<JWT>. The
// assertion must be RS256-signed by the key of a service account this fake
// made (NewServiceAccount), with iss its client_email, aud the token URL, a
// scope, and iat/exp no more than an hour apart around now. The answer is
// {"access_token":"...","token_type":"Bearer","expires_in":3600}; refusals
// are 400 with Google's {"error":"invalid_grant","error_description":"..."}.
type OAuth struct {
	URL      string // "http://127.0.0.1:port"
	TokenURL string // URL + "/token": the token_uri of the service accounts

	srv      *server
	requests counter
	failures queue[int]

	mu       sync.Mutex
	accounts map[string]*ServiceAccount // by client email
	tokens   map[string]Token           // by access token
}

// Token is an access token the OAuth fake issued.
type Token struct {
	AccessToken string
	ClientEmail string   // the service account's
	Scopes      []string // as the assertion asked
	Expiry      time.Time
}

// ServiceAccount is a Google service account whose public key the OAuth fake trusts.
type ServiceAccount struct {
	ProjectID    string
	ClientEmail  string // iss of its assertions
	ClientID     string
	PrivateKeyID string // kid of its assertions
	PrivateKey   *rsa.PrivateKey
	TokenURI     string // the OAuth fake's TokenURL
}

// NewOAuth starts an OAuth token endpoint fake.
func NewOAuth() (*OAuth, error) {
	o := &OAuth{accounts: map[string]*ServiceAccount{}, tokens: map[string]Token{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", o.token)
	srv, err := listen("oauth", mux)
	if err != nil {
		return nil, err
	}
	o.srv, o.URL, o.TokenURL = srv, srv.url, srv.url+"/token"
	return o, nil
}

// Close stops the fake.
func (o *OAuth) Close() { o.srv.close() }

// NewServiceAccount makes a service account of project with a new RSA 2048
// key that the fake trusts from now on.
func (o *OAuth) NewServiceAccount(projectID string) (*ServiceAccount, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("saasfake: generate service account key: %w", err)
	}
	kid := make([]byte, 20)
	_, _ = rand.Read(kid) // never fails
	clientID, _ := rand.Int(rand.Reader, big.NewInt(1e18))

	o.mu.Lock()
	defer o.mu.Unlock()
	sa := &ServiceAccount{
		ProjectID: projectID,
		// Unique across fakes, so that an account of one is unknown to another.
		ClientEmail:  fmt.Sprintf("notifications-%x@%s.iam.gserviceaccount.com", kid[:4], projectID),
		ClientID:     fmt.Sprintf("1%018d", clientID),
		PrivateKeyID: hex.EncodeToString(kid),
		PrivateKey:   key,
		TokenURI:     o.TokenURL,
	}
	o.accounts[sa.ClientEmail] = sa
	return sa, nil
}

// WriteServiceAccount makes a service account of project (NewServiceAccount)
// and writes its JSON key file into dir; it returns the file's path.
func (o *OAuth) WriteServiceAccount(dir, projectID string) (string, error) {
	sa, err := o.NewServiceAccount(projectID)
	if err != nil {
		return "", err
	}
	b, err := sa.JSON()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "service-account-"+sa.ClientEmail+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("saasfake: write service account: %w", err)
	}
	return path, nil
}

// JSON returns the account's key file as Google's console downloads it.
func (sa *ServiceAccount) JSON() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(sa.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("saasfake: encode service account key: %w", err)
	}
	user := strings.SplitN(sa.ClientEmail, "@", 2)[0]
	return json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  sa.ProjectID,
		"private_key_id":              sa.PrivateKeyID,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                sa.ClientEmail,
		"client_id":                   sa.ClientID,
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   sa.TokenURI,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/" + user,
		"universe_domain":             "googleapis.com",
	}, "", "  ")
}

// FailNext makes the next n token requests fail with status (Google's
// {"error":"internal_failure"} body for 5xx, "invalid_request" otherwise).
func (o *OAuth) FailNext(status, n int) { o.failures.push(status, n) }

// TokenRequests counts the requests to /token, refused ones included.
func (o *OAuth) TokenRequests() int { return o.requests.get() }

// Tokens returns the access tokens issued so far, in no particular order.
func (o *OAuth) Tokens() []Token {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Token, 0, len(o.tokens))
	for _, t := range o.tokens {
		out = append(out, t)
	}
	return out
}

// Valid returns the token the fake issued as accessToken if it has not expired.
func (o *OAuth) Valid(accessToken string) (Token, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.tokens[accessToken]
	return t, ok && time.Now().Before(t.Expiry)
}

// RevokeTokens makes every access token issued so far invalid, as if it had
// expired early.
func (o *OAuth) RevokeTokens() {
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.tokens)
}

// assertion is the claim set of a service account's JWT assertion.
type assertion struct {
	Scope string `json:"scope"`
	jwt.RegisteredClaims
}

// errGrant is a refused assertion: Google's error and error_description.
type errGrant struct{ code, description string }

func (e *errGrant) Error() string { return e.code + ": " + e.description }

func (o *OAuth) token(w http.ResponseWriter, r *http.Request) {
	o.requests.inc()
	if status, ok := o.failures.pop(); ok {
		code := "invalid_request"
		if status >= 500 {
			code = "internal_failure"
		}
		writeJSON(w, status, map[string]string{"error": code, "error_description": http.StatusText(status)})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, &errGrant{"invalid_request", "Could not parse the request body."})
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != JWTBearerGrant {
		writeOAuthError(w, &errGrant{"unsupported_grant_type", "Invalid grant_type: " + gt})
		return
	}
	claims, err := o.verify(r.PostForm.Get("assertion"))
	if err != nil {
		writeOAuthError(w, err)
		return
	}
	t := Token{
		AccessToken: "ya29.saasfake-" + newMessageID(),
		ClientEmail: claims.Issuer,
		Scopes:      strings.Fields(claims.Scope),
		Expiry:      time.Now().Add(TokenLifetime),
	}
	o.mu.Lock()
	o.tokens[t.AccessToken] = t
	o.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": t.AccessToken,
		"token_type":   "Bearer",
		"expires_in":   int(TokenLifetime / time.Second),
	})
}

// verify checks an assertion as Google does and returns its claims.
func (o *OAuth) verify(raw string) (*assertion, error) {
	if raw == "" {
		return nil, &errGrant{"invalid_request", "Missing required parameter: assertion"}
	}
	var claims assertion
	_, err := jwt.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		o.mu.Lock()
		sa := o.accounts[claims.Issuer]
		o.mu.Unlock()
		if sa == nil {
			return nil, &errGrant{"invalid_grant", "Invalid grant: account not found"}
		}
		if kid, ok := t.Header["kid"].(string); ok && kid != sa.PrivateKeyID {
			return nil, &errGrant{"invalid_grant", "Invalid JWT Signature."}
		}
		return &sa.PrivateKey.PublicKey, nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithAudience(o.TokenURL),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(time.Minute),
	)
	var grant *errGrant
	switch {
	case errors.As(err, &grant):
		return nil, grant
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return nil, &errGrant{"invalid_grant", "Invalid JWT Signature."}
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return nil, &errGrant{"invalid_grant", "Invalid JWT: Failed audience check. The right audience is " + o.TokenURL}
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenUsedBeforeIssued), errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return nil, &errGrant{"invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."}
	case err != nil:
		return nil, &errGrant{"invalid_grant", "Invalid JWT: " + err.Error()}
	}
	if claims.IssuedAt == nil || claims.ExpiresAt.Sub(claims.IssuedAt.Time) > TokenLifetime {
		return nil, &errGrant{"invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."}
	}
	if claims.Scope == "" {
		return nil, &errGrant{"invalid_scope", "Empty or missing scope not allowed."}
	}
	return &claims, nil
}

func writeOAuthError(w http.ResponseWriter, err error) {
	var grant *errGrant
	if !errors.As(err, &grant) {
		grant = &errGrant{"invalid_request", err.Error()}
	}
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": grant.code, "error_description": grant.description})
}

// hasScope reports whether t was issued for one of scopes.
func (t Token) hasScope(scopes ...string) bool {
	return slices.ContainsFunc(t.Scopes, func(s string) bool { return slices.Contains(scopes, s) })
}
