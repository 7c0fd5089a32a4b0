package node

import (
	"context"
	"errors"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scripnet/scrip/protocol"
)

// clientMetrics are the client node's Prometheus metrics, in a registry
// of their own, served at /metrics:
//
//	scrip_client_calls_total{op,result}          calls to servers by operation and result
//	scrip_client_coins_total{outcome}            coins paid, by what became of them
//	scrip_client_coins_verified_total            new coins (withdrawn or swapped) that verified
//	scrip_client_coins_rejected_total{reason}    coins refused: by a server, by the mint, or failing verification
//	scrip_client_spent_total                     units the servers took
//	scrip_client_corrupt_shares_total            shares that failed their check
//	scrip_client_server_price{server,rate}       each server's current rates
//	scrip_client_servers_connected               servers connected with a valid schedule
//	scrip_client_wallet{state}                   wallet value by coin state
type clientMetrics struct {
	reg       *prometheus.Registry
	calls     *prometheus.CounterVec
	coins     *prometheus.CounterVec
	verified  prometheus.Counter
	rejected  *prometheus.CounterVec
	spend     prometheus.Counter
	corrupt   prometheus.Counter
	price     *prometheus.GaugeVec
	connected prometheus.Gauge
	wallet    *prometheus.GaugeVec
}

func newClientMetrics() *clientMetrics {
	m := &clientMetrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scrip_client_calls_total",
			Help: "Calls to storage servers, by operation and result (ok, or the error code)."}, []string{"op", "result"}),
		coins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scrip_client_coins_total",
			Help: "Coins paid to servers, by outcome: spent, refused (usable again at that server or the mint), unknown (no answer)."}, []string{"outcome"}),
		verified: prometheus.NewCounter(prometheus.CounterOpts{Name: "scrip_client_coins_verified_total",
			Help: "New coins from withdrawals and swaps whose mint signature verified."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scrip_client_coins_rejected_total",
			Help: "Coins refused, by reason: a server's or the mint's refusal, or a mint signature that failed to verify."}, []string{"reason"}),
		spend: prometheus.NewCounter(prometheus.CounterOpts{Name: "scrip_client_spent_total",
			Help: "Units the servers took for calls they answered."}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{Name: "scrip_client_corrupt_shares_total",
			Help: "Downloaded shares that failed their integrity check."}),
		price: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scrip_client_server_price",
			Help: "Each server's current rates, in the mint's unit (per call, per GiB-month stored, per GiB read, per GiB written)."}, []string{"server", "rate"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "scrip_client_servers_connected",
			Help: "Servers connected with a price schedule valid now."}),
		wallet: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scrip_client_wallet",
			Help: "Wallet value by coin state (unspent, reserved, bound, pending)."}, []string{"state"}),
	}
	m.reg.MustRegister(m.calls, m.coins, m.verified, m.rejected, m.spend, m.corrupt, m.price, m.connected, m.wallet)
	return m
}

// call counts one call and, for a refusal about coins, its reason.
func (m *clientMetrics) call(op string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
		if e, ok := errors.AsType[*protocol.Error](err); ok {
			result = strings.ToLower(e.Code.String())
			switch {
			case errors.Is(err, protocol.ErrDoubleSpend), errors.Is(err, protocol.ErrInvalidCoin),
				errors.Is(err, protocol.ErrUnknownKeyset), errors.Is(err, protocol.ErrExpiredKeyset),
				errors.Is(err, protocol.ErrRevokedKeyset), errors.Is(err, protocol.ErrRateLimited):
				m.rejected.WithLabelValues(result).Inc()
			}
		}
	}
	m.calls.WithLabelValues(op, result).Inc()
}

// observeSchedule records a server's rates.
func (m *clientMetrics) observeSchedule(id peer.ID, s *protocol.SignedSchedule) {
	if s == nil {
		return
	}
	sid := id.String()
	m.price.WithLabelValues(sid, "per_call").Set(float64(s.Rates.PerCall))
	m.price.WithLabelValues(sid, "store_per_gib_month").Set(float64(s.Rates.StorePerGiBMonth))
	m.price.WithLabelValues(sid, "read_per_gib").Set(float64(s.Rates.ReadPerGiB))
	m.price.WithLabelValues(sid, "write_per_gib").Set(float64(s.Rates.WritePerGiB))
}

// observeWallet records the wallet's balances and the connected servers.
func (m *clientMetrics) observeWallet(ctx context.Context, c *Client) {
	if b, err := c.wallet.Balance(ctx); err == nil {
		m.wallet.WithLabelValues("unspent").Set(float64(b.Unspent))
		m.wallet.WithLabelValues("reserved").Set(float64(b.Reserved))
		m.wallet.WithLabelValues("bound").Set(float64(b.Bound))
		m.wallet.WithLabelValues("pending").Set(float64(b.Pending))
	}
	n, _ := c.connectedServers()
	m.connected.Set(float64(n))
}
