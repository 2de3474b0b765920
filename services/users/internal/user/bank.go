package user

import (
	"regexp"
	"strings"

	"github.com/marketmesh/marketmesh/plugins/money"
)

// BankAccountInput is a validated, normalized bank account.
type BankAccountInput struct {
	Holder        string
	Bank          string
	AccountNumber string // digits and upper-case letters only (IBANs have letters)
	Currency      string
}

var accountRE = regexp.MustCompile(`^[A-Z0-9]{6,34}$`)

// NewBankAccount validates and normalizes a payout account.
func NewBankAccount(holder, bank, number, currency string) (BankAccountInput, error) {
	var in BankAccountInput
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
