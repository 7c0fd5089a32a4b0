package protocol

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"io"
)

// Domain tags of vouchers.
const (
	tagVoucher       = "scrip/v1/voucher\x00"
	tagPayoutVoucher = "scrip/v1/payout-voucher\x00"
)

// Voucher code lengths, in bytes. Codes that [VoucherFunding] makes are
// VoucherCodeLen characters of lowercase base32 (160 random bits).
const (
	MinVoucherCode = 16
	MaxVoucherCode = 128
	VoucherCodeLen = 32
)

var voucherEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// VoucherID returns the funding account of a voucher code,
// SHA-256("scrip/v1/voucher\x00" || code). The store keeps only this
// hash, so a copy of the mint's database does not hold spendable codes.
func VoucherID(code string) [32]byte {
	h := sha256.New()
	h.Write([]byte(tagVoucher))
	h.Write([]byte(code))
	return [32]byte(h.Sum(nil))
}

// checkVoucherCode applies the form of a voucher code: MinVoucherCode to
// MaxVoucherCode bytes of printable ASCII other than space.
func checkVoucherCode(code []byte) error {
	if len(code) < MinVoucherCode || len(code) > MaxVoucherCode {
		return ErrBadFunding
	}
	for _, c := range code {
		if c < 0x21 || c > 0x7e {
			return ErrBadFunding
		}
	}
	return nil
}

// VoucherFunding is the default [Funding]: prepaid vouchers. A voucher is
// a bearer code with a value in one unit, sold out of band; the funding
// proof of a WithdrawFinish is the code's bytes, and each withdrawal
// spends from it the total of its new coins until nothing is left. Its
// accounts live in a [FundingLedger], the mint's store.
//
// Payouts are vouchers too: [VoucherFunding.Pay] opens a voucher of the
// payout's value whose code, derived from the payout key and the payout's
// server and request ID, is the receipt. The server redeems it out of band
// or withdraws coins with it; the destination is ignored.
//
// Creating vouchers ([VoucherFunding.CreateVoucher]) is an admin call: the
// mint's node offers it on its local admin endpoint, never on libp2p.
type VoucherFunding struct {
	ledger    FundingLedger
	payoutKey [32]byte
}

var _ Funding = (*VoucherFunding)(nil)

// Format redacts: a VoucherFunding holds the payout key, from which every
// payout voucher code (bearer money) derives.
func (f VoucherFunding) Format(s fmt.State, verb rune) {
	fmt.Fprintf(s, "protocol.VoucherFunding{payout key set: %t}", f.payoutKey != [32]byte{})
}

// NewVoucherFunding returns voucher funding over ledger. payoutKey is a
// secret of the mint from which payout codes are derived; with the zero
// key every payout is refused.
func NewVoucherFunding(ledger FundingLedger, payoutKey [32]byte) *VoucherFunding {
	return &VoucherFunding{ledger: ledger, payoutKey: payoutKey}
}

// Account implements [Funding]: proof is a voucher code, and its account
// is [VoucherID] of it. Whether the voucher exists and what is left on it
// is checked by the store when it charges. A proof that is not a code is
// refused with [ErrBadFunding].
func (f *VoucherFunding) Account(ctx context.Context, proof []byte) ([32]byte, error) {
	if err := checkVoucherCode(proof); err != nil {
		return [32]byte{}, err
	}
	return VoucherID(string(proof)), nil
}

// Pay implements [Funding] by opening a voucher of o's amount and unit and
// returning its code. The code depends only on the payout key, o.Server
// and o.RequestID, so a repeated Pay opens the same voucher once.
func (f *VoucherFunding) Pay(ctx context.Context, o PayoutOrder) ([]byte, error) {
	if f.payoutKey == ([32]byte{}) {
		return nil, fmt.Errorf("%w: no payout key", ErrPayoutRefused)
	}
	mac := hmac.New(sha256.New, f.payoutKey[:])
	mac.Write([]byte(tagPayoutVoucher))
	mac.Write(binary.BigEndian.AppendUint16(nil, uint16(len(o.Server))))
	mac.Write([]byte(o.Server))
	mac.Write(o.RequestID[:])
	code := voucherEncoding.EncodeToString(mac.Sum(nil)[:20])
	if err := f.ledger.OpenFunding(ctx, VoucherID(code), o.Unit, o.Amount); err != nil {
		return nil, err
	}
	return []byte(code), nil
}

// CreateVoucher creates a voucher worth value of unit with a fresh code
// drawn from rand, and returns the code. It is an admin call.
func (f *VoucherFunding) CreateVoucher(ctx context.Context, rand io.Reader, unit string, value uint64) (string, error) {
	if checkUnit(unit) != nil {
		return "", fmt.Errorf("protocol: bad voucher unit %q", unit)
	}
	if value == 0 {
		return "", fmt.Errorf("protocol: voucher of no value")
	}
	var b [20]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", err
	}
	code := voucherEncoding.EncodeToString(b[:])
	if err := f.ledger.OpenFunding(ctx, VoucherID(code), unit, value); err != nil {
		return "", err
	}
	return code, nil
}

// Voucher returns the state of the voucher with code, or an error wrapping
// [ErrUnknownFunding]. It is an admin call.
func (f *VoucherFunding) Voucher(ctx context.Context, code string) (FundingAccount, error) {
	return f.ledger.FundingAccount(ctx, VoucherID(code))
}
