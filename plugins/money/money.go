// Package money is the one representation of prices and amounts across
// marketmesh: integer minor units and an ISO 4217 currency code, exactly as
// the public API writes them: {"amount": 1999, "currency": "USD"}.
package money

import (
	"errors"
	"fmt"
	"strings"
)

// Money is an amount in minor units (cents for USD) of one currency.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// ErrInvalid is wrapped by every validation error of this package.
var ErrInvalid = errors.New("invalid money")

// MaxAmount bounds amounts (a trillion major units) so sums cannot overflow.
const MaxAmount = 1e14

// Validate checks m as the named field: a known currency and a positive amount.
func (m Money) Validate(field string) error {
	if !IsCurrency(m.Currency) {
		return fmt.Errorf("%w: %s.currency %q is not an ISO 4217 code (upper case, like USD)", ErrInvalid, field, m.Currency)
	}
	if m.Amount <= 0 {
		return fmt.Errorf("%w: %s.amount must be a positive integer in minor units (1999 = 19.99)", ErrInvalid, field)
	}
	if m.Amount > MaxAmount {
		return fmt.Errorf("%w: %s.amount is too large", ErrInvalid, field)
	}
	return nil
}

// String formats m for logs: "19.99 USD" (two decimals whatever the currency).
func (m Money) String() string {
	return fmt.Sprintf("%d.%02d %s", m.Amount/100, m.Amount%100, m.Currency)
}

// Active ISO 4217 currency codes (2024).
const iso4217 = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD " +
	"CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF " +
	"GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP " +
	"LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB " +
	"PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL " +
	"THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWG"

// IsCurrency reports whether c is an active ISO 4217 code.
func IsCurrency(c string) bool {
	return len(c) == 3 && strings.Contains(" "+iso4217+" ", " "+c+" ")
}
