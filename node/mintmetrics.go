package node

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/protocol/pb"
)

// The mint's metrics, in its registry ([Mint.Registry]), served by its
// admin endpoint at /metrics:
//
//	scrip_mint_calls_total{op,outcome}          calls answered (outcome: ok or the error code)
//	scrip_mint_call_seconds{op}                 time to handle a call
//	scrip_mint_deposit_coins_total{status}      coins in Deposit answers, by verdict (credited, ...)
//	scrip_mint_payout_value_total{unit}         value of Payout calls answered, retries included
//	scrip_mint_issued_value_total{unit}         value issued (withdrawals and swap outputs)
//	scrip_mint_issued_coins_total{unit}         coins issued
//	scrip_mint_deposited_value_total{unit}      value credited to servers
//	scrip_mint_swapped_value_total{unit}        value taken in as swap inputs
//	scrip_mint_recouped_value_total{unit}       value recouped from revoked keysets
//	scrip_mint_overspent_keys                   denomination keys with more spent than issued: a leaked key
//	scrip_mint_keysets{state}                   keysets held: issuing, active (not issuing), revoked
//
// The value totals come from the store's audit counters (see
// mintstore.Store.Audit), read at each scrape, so they survive restarts
// and count each coin once whatever the retries.
type mintMetrics struct {
	m        *Mint
	calls    *callMetrics
	deposits *prometheus.CounterVec
	payouts  *prometheus.CounterVec

	issuedValue, issuedCoins, deposited, swapped, recouped, overspent, keysets *prometheus.Desc
}

func newMintMetrics(m *Mint) *mintMetrics {
	reg := m.registry
	mm := &mintMetrics{
		m:     m,
		calls: newCallMetrics(reg, "scrip_mint"),
		deposits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scrip_mint_deposit_coins_total",
			Help: "Coins in Deposit answers, by verdict.",
		}, []string{"status"}),
		payouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scrip_mint_payout_value_total",
			Help: "Value of the Payout calls answered, retries included.",
		}, []string{"unit"}),
		issuedValue: prometheus.NewDesc("scrip_mint_issued_value_total", "Value issued: withdrawals and swap outputs.", []string{"unit"}, nil),
		issuedCoins: prometheus.NewDesc("scrip_mint_issued_coins_total", "Coins issued.", []string{"unit"}, nil),
		deposited:   prometheus.NewDesc("scrip_mint_deposited_value_total", "Value credited to servers by deposits.", []string{"unit"}, nil),
		swapped:     prometheus.NewDesc("scrip_mint_swapped_value_total", "Value taken in as swap inputs.", []string{"unit"}, nil),
		recouped:    prometheus.NewDesc("scrip_mint_recouped_value_total", "Value recouped from revoked keysets.", []string{"unit"}, nil),
		overspent:   prometheus.NewDesc("scrip_mint_overspent_keys", "Denomination keys with more coins spent than issued: leaked keys.", nil, nil),
		keysets:     prometheus.NewDesc("scrip_mint_keysets", "Keysets held, by state.", []string{"state"}, nil),
	}
	reg.MustRegister(mm.deposits, mm.payouts, mm)
	return mm
}

// observe counts what the answers of Deposit and Payout calls say.
func (mm *mintMetrics) observe(op string, req *pb.Request, resp *pb.Response, err error) {
	if err != nil || resp == nil {
		return
	}
	switch op {
	case "deposit":
		var r pb.MintResponse
		if proto.Unmarshal(resp.Body, &r) != nil {
			return
		}
		for _, res := range r.GetDeposit().GetResults() {
			mm.deposits.WithLabelValues(depositStatusName(res.Status)).Inc()
		}
	case "payout":
		var r pb.MintRequest
		if proto.Unmarshal(req.Body, &r) != nil {
			return
		}
		if a := r.GetPayout().GetAmount(); a != nil {
			mm.payouts.WithLabelValues(a.Unit).Add(float64(a.Amount))
		}
	}
}

// depositStatusName is a deposit verdict in lower case without its
// prefix: "credited", "double_spent", ...
func depositStatusName(s pb.DepositStatus) string {
	name := s.String()
	const prefix = "DEPOSIT_"
	if len(name) > len(prefix) && name[:len(prefix)] == prefix {
		name = name[len(prefix):]
	}
	out := []byte(name)
	for i, c := range out {
		if 'A' <= c && c <= 'Z' {
			out[i] = c + 'a' - 'A'
		}
	}
	return string(out)
}

// Describe implements prometheus.Collector.
func (mm *mintMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mm.issuedValue, mm.issuedCoins, mm.deposited, mm.swapped, mm.recouped, mm.overspent, mm.keysets} {
		ch <- d
	}
}

// Collect implements prometheus.Collector from the store's audit and the
// keyring.
func (mm *mintMetrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m := mm.m
	type sums struct{ issued, coins, deposited, swapped, recouped float64 }
	byUnit := map[string]*sums{m.policy.Unit: {}}
	overspent := 0
	if entries, err := m.store.Audit(ctx); err == nil {
		units := m.units()
		for _, e := range entries {
			unit, ok := units[e.KeysetID]
			if !ok {
				// A keyset pruned since: a mint has one unit.
				unit = m.policy.Unit
			}
			s := byUnit[unit]
			if s == nil {
				s = &sums{}
				byUnit[unit] = s
			}
			a := float64(e.Amount)
			s.issued += float64(e.Issued()) * a
			s.coins += float64(e.Issued())
			s.deposited += float64(e.Deposited) * a
			s.swapped += float64(e.SwapIn) * a
			s.recouped += float64(e.Recouped) * a
			if e.Overspent {
				overspent++
			}
		}
	} else {
		ch <- prometheus.NewInvalidMetric(mm.issuedValue, err)
	}
	for unit, s := range byUnit {
		ch <- prometheus.MustNewConstMetric(mm.issuedValue, prometheus.CounterValue, s.issued, unit)
		ch <- prometheus.MustNewConstMetric(mm.issuedCoins, prometheus.CounterValue, s.coins, unit)
		ch <- prometheus.MustNewConstMetric(mm.deposited, prometheus.CounterValue, s.deposited, unit)
		ch <- prometheus.MustNewConstMetric(mm.swapped, prometheus.CounterValue, s.swapped, unit)
		ch <- prometheus.MustNewConstMetric(mm.recouped, prometheus.CounterValue, s.recouped, unit)
	}
	ch <- prometheus.MustNewConstMetric(mm.overspent, prometheus.GaugeValue, float64(overspent))
	now := m.cfg.Clock()
	var issuing, active, revoked float64
	for _, p := range m.keys.Keysets() {
		switch {
		case p.Revoked:
			revoked++
		case p.Keyset.Open(coin.WindowIssue, now):
			issuing++
		default:
			active++
		}
	}
	ch <- prometheus.MustNewConstMetric(mm.keysets, prometheus.GaugeValue, issuing, "issuing")
	ch <- prometheus.MustNewConstMetric(mm.keysets, prometheus.GaugeValue, active, "active")
	ch <- prometheus.MustNewConstMetric(mm.keysets, prometheus.GaugeValue, revoked, "revoked")
}
