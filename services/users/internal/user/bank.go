package user

import (
	"regexp"
	"strings"
	"time"

	"github.com/marketmesh/marketmesh/plugins/money"
)

// BankAccount is a payout account. Its number is kept only sealed (see
// Sealer); the last four characters are the only part ever shown.
type BankAccount struct {
	ID           string
	Holder       string
	Bank         string
	SealedNumber []byte // the normalized number, sealed and bound to owner and ID
	Last4        string
	Currency     string // ISO 4217
	CreatedAt    time.Time
}

// BankAccountDraft is a payout account as its owner provides it, number in
// the clear.
type BankAccountDraft struct {
	Holder        string
	Bank          string
	AccountNumber string // NormalizeBankAccount keeps digits and upper-case letters only (IBANs have letters)
	Currency      string
}

// Sealer encrypts a bank account number with additional data it is bound
// to; internal/sealer is the implementation.
type Sealer interface {
	Seal(plaintext, ad []byte) ([]byte, error)
}

// NewBankAccount validates d and returns owner's account id, its number
// sealed by s and bound to owner and id, so that a sealed number copied to
// another account or user does not open.
func NewBankAccount(id, owner string, d BankAccountDraft, now time.Time, s Sealer) (BankAccount, error) {
	d, err := NormalizeBankAccount(d.Holder, d.Bank, d.AccountNumber, d.Currency)
	if err != nil {
		return BankAccount{}, err
	}
	sealed, err := s.Seal([]byte(d.AccountNumber), []byte(owner+"/"+id))
	if err != nil {
		return BankAccount{}, err
	}
	return BankAccount{ID: id, Holder: d.Holder, Bank: d.Bank, SealedNumber: sealed,
		Last4: Mask(d.AccountNumber)[len("****"):], Currency: d.Currency, CreatedAt: now}, nil
}

// MaskedNumber is the account number as it may be shown: "****" and the
// last four characters.
func (a BankAccount) MaskedNumber() string { return "****" + a.Last4 }

var accountRE = regexp.MustCompile(`^[A-Z0-9]{6,34}$`)

// NormalizeBankAccount validates and normalizes a payout account.
func NormalizeBankAccount(holder, bank, number, currency string) (BankAccountDraft, error) {
	var in BankAccountDraft
	var err error
	if in.Holder, err = CleanText("holder", holder, MaxName); err != nil {
		return in, err
	}
	if in.Bank, err = CleanText("bank", bank, MaxName); err != nil {
		return in, err
	}
	in.AccountNumber = strings.ToUpper(strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, number))
	if in.AccountNumber == "" {
		return in, invalid("account_number is required")
	}
	if !accountRE.MatchString(in.AccountNumber) {
		return in, invalid("account_number must be 6 to 34 letters or digits (spaces and dashes are ignored)")
	}
	in.Currency = strings.TrimSpace(currency)
	if in.Currency == "" {
		return in, invalid("currency is required")
	}
	if !money.IsCurrency(in.Currency) {
		return in, invalid("currency %q is not an ISO 4217 code (upper case, like USD)", in.Currency)
	}
	return in, nil
}

// Mask shows only the last four characters of an account number.
func Mask(number string) string {
	if len(number) <= 4 {
		return "****"
	}
	return "****" + number[len(number)-4:]
}
