package template

import (
	"strconv"
	"strings"

	"github.com/marketmesh/marketmesh/plugins/money"
)

// minorUnits is the ISO 4217 exponent of the active currencies that do not
// have two decimals; every other currency, known or not, has two.
var minorUnits = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
	"PYG": 0, "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

// symbols are the currencies written with a symbol before the amount; the
// others are written "12.50 CHF". "$" is USD's alone: CAD or AUD would be ambiguous.
var symbols = map[string]string{
	"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "KRW": "₩",
}

// FormatMoney writes m for people: the amount in major units with the
// currency's own number of decimals and thousands separated by commas, after
// the currency's symbol when it has one ("$1,234.50", "€12.50", "¥1,250")
// and before its code otherwise ("12.50 CHF", "1.250 KWD", "12.50 XYZ").
func FormatMoney(m money.Money) string {
	exp, ok := minorUnits[m.Currency]
	if !ok {
		exp = 2
	}
	amount := m.Amount
	sign := ""
	if amount < 0 {
		sign, amount = "-", -amount
	}
	digits := strconv.FormatInt(amount, 10)
	if len(digits) <= exp {
		digits = strings.Repeat("0", exp-len(digits)+1) + digits
	}
	whole, frac := digits[:len(digits)-exp], digits[len(digits)-exp:]
	number := groupThousands(whole)
	if exp > 0 {
		number += "." + frac
	}
	if sym, ok := symbols[m.Currency]; ok {
		return sign + sym + number
	}
	if m.Currency == "" {
		return sign + number
	}
	return sign + number + " " + m.Currency
}

// groupThousands puts a comma between every three digits from the right.
func groupThousands(digits string) string {
	var b strings.Builder
	for i, d := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return b.String()
}
