package user

import (
	"regexp"
	"strings"
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
	if !isCurrency(in.Currency) {
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

// Active ISO 4217 currency codes (2024), for validating payout currencies.
const iso4217 = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD " +
	"CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF " +
	"GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP " +
	"LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB " +
	"PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL " +
	"THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWG"

func isCurrency(c string) bool {
	return len(c) == 3 && strings.Contains(" "+iso4217+" ", " "+c+" ")
}
