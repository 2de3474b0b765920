package user_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/marketmesh/marketmesh/services/users/internal/user"
)

// wantInvalid fails unless err is a validation error naming field.
func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want a validation error naming %q", field)
	}
	if !errors.Is(err, user.ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	if !strings.Contains(err.Error(), field) {
		t.Errorf("message %q does not name the field %q", err.Error(), field)
	}
}

// emailOfLength returns a syntactically valid address of exactly n bytes (n >= 70).
func emailOfLength(n int) string {
	local := strings.Repeat("a", 64)
	domain := strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "."
	return local + "@" + domain + strings.Repeat("d", n-len(local)-1-len(domain))
}

func TestNormalizeEmail(t *testing.T) {
	tests := []struct {
		name, in, want string
		invalid        bool
	}{
		{name: "a plain address is kept", in: "ada@example.com", want: "ada@example.com"},
		{name: "upper case is folded to lower case", in: "Ada.Lovelace@Example.COM", want: "ada.lovelace@example.com"},
		{name: "surrounding spaces are trimmed", in: "  ada@example.com\t\n", want: "ada@example.com"},
		{name: "plus tags are allowed", in: "ada+shop@example.co.uk", want: "ada+shop@example.co.uk"},
		{name: "an address of exactly 254 bytes is accepted", in: emailOfLength(254), want: emailOfLength(254)},
		{name: "an empty address is refused", in: "", invalid: true},
		{name: "a blank address is refused", in: "   ", invalid: true},
		{name: "an address without @ is refused", in: "ada.example.com", invalid: true},
		{name: "an address without a domain is refused", in: "ada@", invalid: true},
		{name: "an address without a local part is refused", in: "@example.com", invalid: true},
		{name: "a domain without a dot is refused", in: "ada@localhost", invalid: true},
		{name: "two @ are refused", in: "ada@@example.com", invalid: true},
		{name: "a space inside is refused", in: "ada lovelace@example.com", invalid: true},
		{name: "a display name form is refused", in: "Ada <ada@example.com>", invalid: true},
		{name: "a list of addresses is refused", in: "ada@example.com, bob@example.com", invalid: true},
		{name: "an address of 255 bytes is refused", in: emailOfLength(255), invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := user.NormalizeEmail(tt.in)
			if tt.invalid {
				wantInvalid(t, err, "email")
				if got != "" {
					t.Errorf("got %q with an error, want empty", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizeEmail(%q) = %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("NormalizeEmail(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckPassword(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{name: "eight ASCII characters are enough", in: "abcdefgh", ok: true},
		{name: "seven ASCII characters are too few", in: "abcdefg"},
		{name: "an empty password is refused", in: ""},
		{name: "eight two-byte runes count as eight characters", in: strings.Repeat("é", 8), ok: true},
		{name: "seven two-byte runes (14 bytes) are too few", in: strings.Repeat("é", 7)},
		{name: "seven four-byte emoji (28 bytes) are too few", in: strings.Repeat("🔒", 7)},
		{name: "exactly 256 bytes are accepted", in: strings.Repeat("x", 256), ok: true},
		{name: "257 bytes are refused", in: strings.Repeat("x", 257)},
		{name: "128 two-byte runes (256 bytes) are accepted", in: strings.Repeat("é", 128), ok: true},
		{name: "129 two-byte runes (258 bytes) are refused although only 129 characters", in: strings.Repeat("é", 129)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := user.CheckPassword(tt.in)
			if tt.ok {
				if err != nil {
					t.Fatalf("CheckPassword(%d bytes) = %v, want nil", len(tt.in), err)
				}
				return
			}
			wantInvalid(t, err, "password")
		})
	}
}

func TestCleanText(t *testing.T) {
	tests := []struct {
		name, in, want string
		max            int
		invalid        bool
	}{
		{name: "text is trimmed", in: "  Ada Lovelace \n", max: 100, want: "Ada Lovelace"},
		{name: "inner spaces are kept", in: "Ada  Lovelace", max: 100, want: "Ada  Lovelace"},
		{name: "exactly max characters are accepted", in: strings.Repeat("a", 100), max: 100, want: strings.Repeat("a", 100)},
		{name: "max counts characters, not bytes", in: strings.Repeat("ñ", 100), max: 100, want: strings.Repeat("ñ", 100)},
		{name: "an empty string is refused", in: "", max: 100, invalid: true},
		{name: "only spaces are refused", in: " \t ", max: 100, invalid: true},
		{name: "one character over max is refused", in: strings.Repeat("a", 101), max: 100, invalid: true},
		{name: "a NUL byte is refused", in: "Ada\x00Lovelace", max: 100, invalid: true},
		{name: "an inner newline is refused", in: "Ada\nLovelace", max: 100, invalid: true},
		{name: "an inner tab is refused", in: "Ada\tLovelace", max: 100, invalid: true},
		{name: "an escape character is refused", in: "Ada\x1b[31m", max: 100, invalid: true},
		{name: "a C1 control character is refused", in: "Ada\u0085Lovelace", max: 100, invalid: true},
		{name: "invalid UTF-8 is refused", in: "Ada\xffLovelace", max: 100, invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := user.CleanText("display_name", tt.in, tt.max)
			if tt.invalid {
				wantInvalid(t, err, "display_name")
				return
			}
			if err != nil {
				t.Fatalf("CleanText(%q) = %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("CleanText(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNormalizePhone(t *testing.T) {
	tests := []struct {
		name, in, want string
		invalid        bool
	}{
		{name: "an E.164 number is kept", in: "+14155550123", want: "+14155550123"},
		{name: "spaces and dashes are removed", in: "+1 415-555-0123", want: "+14155550123"},
		{name: "parentheses are removed", in: "+1 (415) 555-0123", want: "+14155550123"},
		{name: "the shortest form (7 digits) is accepted", in: "+1234567", want: "+1234567"},
		{name: "the longest form (15 digits) is accepted", in: "+123456789012345", want: "+123456789012345"},
		{name: "an empty string clears the phone", in: "", want: ""},
		{name: "only separators clear the phone", in: " - ", want: ""},
		{name: "a number without + is refused", in: "14155550123", invalid: true},
		{name: "a country code starting with 0 is refused", in: "+04155550123", invalid: true},
		{name: "6 digits are too few", in: "+123456", invalid: true},
		{name: "16 digits are too many", in: "+1234567890123456", invalid: true},
		{name: "letters are refused", in: "+1415555CALL", invalid: true},
		{name: "dots are refused", in: "+1.415.555.0123", invalid: true},
		{name: "a second + is refused", in: "+1+4155550123", invalid: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := user.NormalizePhone(tt.in)
			if tt.invalid {
				wantInvalid(t, err, "phone")
				return
			}
			if err != nil {
				t.Fatalf("NormalizePhone(%q) = %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("NormalizePhone(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckDevice(t *testing.T) {
	tests := []struct {
		name, token, platform string
		field                 string // "" when valid
	}{
		{name: "an ios device is accepted", token: "fcm-token:APA91b", platform: "ios"},
		{name: "an android device is accepted", token: "fcm-token:APA91b", platform: "android"},
		{name: "a web device is accepted", token: "fcm-token:APA91b", platform: "web"},
		{name: "a token of exactly 4096 bytes is accepted", token: strings.Repeat("t", 4096), platform: "web"},
		{name: "an unknown platform is refused", token: "tok", platform: "windows", field: "platform"},
		{name: "platform names are case-sensitive", token: "tok", platform: "iOS", field: "platform"},
		{name: "an empty platform is refused", token: "tok", platform: "", field: "platform"},
		{name: "an empty token is refused", token: "", platform: "ios", field: "token"},
		{name: "a blank token is refused", token: "   ", platform: "ios", field: "token"},
		{name: "a token with '/' is refused (it is a path segment)", token: "abc/def", platform: "ios", field: "token"},
		{name: "a token with a space is refused", token: "abc def", platform: "ios", field: "token"},
		{name: "a token with a newline is refused", token: "abc\ndef", platform: "ios", field: "token"},
		{name: "a token of 4097 bytes is refused", token: strings.Repeat("t", 4097), platform: "ios", field: "token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := user.CheckDevice(tt.token, tt.platform)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("CheckDevice = %v, want nil", err)
				}
				return
			}
			wantInvalid(t, err, tt.field)
		})
	}
}

func TestCheckPublicationID(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{name: "a ULID is accepted", in: "01HZY3Q1R2S3T4V5W6X7Y8Z9AB", ok: true},
		{name: "64 characters are accepted", in: strings.Repeat("p", 64), ok: true},
		{name: "an empty ID is refused", in: ""},
		{name: "65 characters are refused", in: strings.Repeat("p", 65)},
		{name: "a '/' is refused", in: "a/b"},
		{name: "a space is refused", in: "a b"},
		{name: "a NUL is refused (it separates store key parts)", in: "pub\x00x"},
		{name: "a control character is refused", in: "pub\x01"},
		{name: "a tab is refused", in: "pub\t1"},
		{name: "a no-break space is refused", in: "pub\u00a01"},
		{name: "invalid UTF-8 is refused", in: "pub\xff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := user.CheckPublicationID(tt.in)
			if tt.ok {
				if err != nil {
					t.Fatalf("CheckPublicationID(%q) = %v", tt.in, err)
				}
				return
			}
			wantInvalid(t, err, "publication_id")
		})
	}
}

func TestNormalizeBankAccount(t *testing.T) {
	type in struct{ holder, bank, number, currency string }
	valid := in{"Ada Lovelace", "Deutsche Bank", "DE89370400440532013000", "EUR"}
	with := func(f func(*in)) in { v := valid; f(&v); return v }
	tests := []struct {
		name       string
		in         in
		wantNumber string
		wantCur    string
		field      string // "" when valid
	}{
		{name: "a compact IBAN is accepted", in: valid, wantNumber: "DE89370400440532013000", wantCur: "EUR"},
		{name: "an IBAN with spaces is normalized to compact upper case",
			in: with(func(v *in) { v.number = "de89 3704 0044 0532 0130 00" }), wantNumber: "DE89370400440532013000", wantCur: "EUR"},
		{name: "dashes are removed", in: with(func(v *in) { v.number = "12-34-56-78" }), wantNumber: "12345678", wantCur: "EUR"},
		{name: "six characters are the minimum", in: with(func(v *in) { v.number = "123456" }), wantNumber: "123456", wantCur: "EUR"},
		{name: "34 characters are the maximum", in: with(func(v *in) { v.number = strings.Repeat("9", 34) }), wantNumber: strings.Repeat("9", 34), wantCur: "EUR"},
		{name: "USD is a currency", in: with(func(v *in) { v.currency = "USD" }), wantNumber: "DE89370400440532013000", wantCur: "USD"},
		{name: "spaces around the currency are trimmed", in: with(func(v *in) { v.currency = " GBP " }), wantNumber: "DE89370400440532013000", wantCur: "GBP"},
		{name: "five characters are too short", in: with(func(v *in) { v.number = "12345" }), field: "account_number"},
		{name: "35 characters are too long", in: with(func(v *in) { v.number = strings.Repeat("9", 35) }), field: "account_number"},
		{name: "an empty number is refused", in: with(func(v *in) { v.number = " - " }), field: "account_number"},
		{name: "dots are refused", in: with(func(v *in) { v.number = "DE89.3704.0044" }), field: "account_number"},
		{name: "slashes are refused", in: with(func(v *in) { v.number = "123456/78" }), field: "account_number"},
		{name: "non-ASCII digits are refused", in: with(func(v *in) { v.number = "١٢٣٤٥٦٧" }), field: "account_number"},
		{name: "a lower-case currency is refused", in: with(func(v *in) { v.currency = "usd" }), field: "currency"},
		{name: "a made-up currency is refused", in: with(func(v *in) { v.currency = "XYZ" }), field: "currency"},
		{name: "a four-letter currency is refused", in: with(func(v *in) { v.currency = "USDT" }), field: "currency"},
		{name: "an empty currency is refused", in: with(func(v *in) { v.currency = "" }), field: "currency"},
		{name: "an empty holder is refused", in: with(func(v *in) { v.holder = " " }), field: "holder"},
		{name: "a holder with control characters is refused", in: with(func(v *in) { v.holder = "Ada\x00" }), field: "holder"},
		{name: "an empty bank is refused", in: with(func(v *in) { v.bank = "" }), field: "bank"},
		{name: "a bank name over 100 characters is refused", in: with(func(v *in) { v.bank = strings.Repeat("b", 101) }), field: "bank"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := user.NormalizeBankAccount(tt.in.holder, tt.in.bank, tt.in.number, tt.in.currency)
			if tt.field != "" {
				wantInvalid(t, err, tt.field)
				return
			}
			if err != nil {
				t.Fatalf("NormalizeBankAccount = %v", err)
			}
			if got.AccountNumber != tt.wantNumber || got.Currency != tt.wantCur {
				t.Errorf("got number %q currency %q, want %q %q", got.AccountNumber, got.Currency, tt.wantNumber, tt.wantCur)
			}
			if got.Holder != strings.TrimSpace(tt.in.holder) || got.Bank != strings.TrimSpace(tt.in.bank) {
				t.Errorf("got holder %q bank %q", got.Holder, got.Bank)
			}
		})
	}
}

func TestMask(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"an IBAN shows only its last four characters", "DE89370400440532013000", "****3000"},
		{"a five-character number shows its last four", "12345", "****2345"},
		{"four characters show nothing", "1234", "****"},
		{"an empty number shows nothing", "", "****"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := user.Mask(tt.in); got != tt.want {
				t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestHashPasswordRoundTrip(t *testing.T) {
	const pw = "correct horse battery staple"
	h1, err := user.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := user.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q is not a PHC argon2id string with the expected parameters", h1)
	}
	if h1 == h2 {
		t.Error("two hashes of the same password are equal: the salt is not random")
	}
	if strings.Contains(h1, pw) {
		t.Error("the hash contains the password")
	}
	tests := []struct {
		name, hash, password string
		want                 bool
	}{
		{"the right password matches", h1, pw, true},
		{"the right password matches its other hash", h2, pw, true},
		{"a wrong password does not match", h1, "correct horse battery stapler", false},
		{"a case change does not match", h1, "Correct horse battery staple", false},
		{"an empty password does not match", h1, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := user.VerifyPassword(tt.hash, tt.password); got != tt.want {
				t.Errorf("VerifyPassword = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestVerifyPasswordRefusesMalformedHashes(t *testing.T) {
	const pw = "password123"
	good, err := user.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$") // "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	join := func(f func(p []string)) string {
		p := append([]string(nil), parts...)
		f(p)
		return strings.Join(p, "$")
	}
	tests := []struct{ name, hash string }{
		{"an empty hash", ""},
		{"a plain-text password stored as the hash", pw},
		{"too few segments", "$argon2id$v=19$m=19456,t=2,p=1$" + parts[4]},
		{"too many segments", good + "$extra"},
		{"another algorithm", join(func(p []string) { p[1] = "argon2i" })},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"parameters that do not parse", join(func(p []string) { p[3] = "m=lots,t=2,p=1" })},
		{"a negative time cost", join(func(p []string) { p[3] = "m=19456,t=-1,p=1" })},
		{"a parallelism that overflows", join(func(p []string) { p[3] = "m=19456,t=2,p=256" })},
		{"zero passes", join(func(p []string) { p[3] = "m=19456,t=0,p=1" })},
		{"zero parallelism", join(func(p []string) { p[3] = "m=19456,t=2,p=0" })},
		{"a memory cost of 4 TiB", join(func(p []string) { p[3] = "m=4294967295,t=2,p=1" })},
		{"a salt that is not base64", join(func(p []string) { p[4] = "!!not base64!!" })},
		{"a key that is not base64", join(func(p []string) { p[5] = "!!not base64!!" })},
		{"an empty key", join(func(p []string) { p[5] = "" })},
		{"a truncated key", join(func(p []string) { p[5] = p[5][:10] })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if v := recover(); v != nil {
					t.Fatalf("VerifyPassword(%q) panicked: %v", tt.hash, v)
				}
			}()
			if user.VerifyPassword(tt.hash, pw) {
				t.Errorf("VerifyPassword(%q, right password) = true, want false", tt.hash)
			}
		})
	}
	if !user.VerifyPassword(good, pw) {
		t.Fatal("the unmodified hash does not verify: the cases above prove nothing")
	}
}

func TestVerifyNobodyDoesNotPanic(t *testing.T) {
	user.VerifyNobody("anything at all")
	user.VerifyNobody("")
}
