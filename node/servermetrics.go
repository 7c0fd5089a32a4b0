package node

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scripnet/scrip/coin"
	"github.com/scripnet/scrip/node/spentset"
	"github.com/scripnet/scrip/protocol"
	"github.com/scripnet/scrip/protocol/pb"
)

// The storage server's metrics, in its registry ([Server.Registry]),
// served at /metrics on ServerConfig.MetricsAddr:
//
//	scrip_server_calls_total{op,outcome}            calls answered (outcome: ok or the error code)
//	scrip_server_call_seconds{op}                   time to handle a call
//	scrip_server_coins_rejected_total{reason}       coins of calls refused, by the refusal's code
//	scrip_server_revenue_value_total{unit}          value of the coins recorded for paid calls
//	scrip_server_deposit_pending_coins              coins waiting to be deposited
//	scrip_server_deposit_pending_value              their value
//	scrip_server_deposit_pending_bearer_value       the bearer part of it
//	scrip_server_bearer_held_value                  bearer value counted against the cap (pending and in calls)
//	scrip_server_deposit_credited_value_total       value the mint credited
//	scrip_server_deposit_lost_value_total           value the mint refused, or that expired undeposited
//	scrip_server_deposit_coins_total{status}        the mint's verdicts on deposited coins
//	scrip_server_deposit_rounds_total{outcome}      deposit rounds, ok or error
//	scrip_server_price{rate}                        rates of the current schedule
//	scrip_server_space_bytes{kind}                  capacity, stored, allocated, available
//	scrip_server_keysets{state}                     the mint's keysets known, revoked
//
// The deposit figures are read from the spent set at each scrape, so they
// survive restarts.
type serverMetrics struct {
	s        *Server
	calls    *callMetrics
	rejected *prometheus.CounterVec
	revenue  *prometheus.CounterVec
	coins    *prometheus.CounterVec
	rounds   *prometheus.CounterVec

	pendingCoins, pendingValue, pendingBearer, held, credited, lost, price, space, keysets *prometheus.Desc
}

func newServerMetrics(s *Server, reg *prometheus.Registry) *serverMetrics {
	sm := &serverMetrics{
		s:     s,
		calls: newCallMetrics(reg, "scrip_server"),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scrip_server_coins_rejected_total",
			Help: "Coins of calls refused, by the code of the refusal.",
		}, []string{"reason"}),
		revenue: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scrip_server_revenue_value_total",
			Help: "Value of the coins recorded for paid calls.",
		}, []string{"unit"}),
		coins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scrip_server_deposit_coins_total",
			Help: "The mint's verdicts on deposited coins.",
		}, []string{"status"}),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scrip_server_deposit_rounds_total",
			Help: "Deposit rounds, by outcome.",
		}, []string{"outcome"}),
		pendingCoins:  prometheus.NewDesc("scrip_server_deposit_pending_coins", "Coins waiting to be deposited.", nil, nil),
		pendingValue:  prometheus.NewDesc("scrip_server_deposit_pending_value", "Value of the coins waiting to be deposited.", nil, nil),
		pendingBearer: prometheus.NewDesc("scrip_server_deposit_pending_bearer_value", "Value of the bearer coins waiting to be deposited.", nil, nil),
		held:          prometheus.NewDesc("scrip_server_bearer_held_value", "Bearer value counted against the cap: pending deposits and calls in progress.", nil, nil),
		credited:      prometheus.NewDesc("scrip_server_deposit_credited_value_total", "Value the mint credited.", nil, nil),
		lost:          prometheus.NewDesc("scrip_server_deposit_lost_value_total", "Value the mint refused, or that expired before it was deposited.", nil, nil),
		price:         prometheus.NewDesc("scrip_server_price", "Rates of the current schedule, in its unit.", []string{"rate", "unit"}, nil),
		space:         prometheus.NewDesc("scrip_server_space_bytes", "Space offered and used, in bytes.", []string{"kind"}, nil),
		keysets:       prometheus.NewDesc("scrip_server_keysets", "The mint's keysets known to the server.", []string{"state"}, nil),
	}
	for _, status := range []pb.DepositStatus{pb.DepositStatus_DEPOSIT_CREDITED, pb.DepositStatus_DEPOSIT_ALREADY_CREDITED, pb.DepositStatus_DEPOSIT_DOUBLE_SPENT} {
		sm.coins.WithLabelValues(depositStatusName(status))
	}
	reg.MustRegister(sm.rejected, sm.revenue, sm.coins, sm.rounds, sm)
	return sm
}

// observe counts the coins of refused calls.
func (sm *serverMetrics) observe(op string, req *pb.Request, resp *pb.Response, err error) {
	if err == nil || len(req.Spends) == 0 {
		return
	}
	if code := protocol.CodeOf(err); code != pb.Code_INTERNAL {
		sm.rejected.WithLabelValues(outcomeOf(err)).Add(float64(len(req.Spends)))
	}
}

func (sm *serverMetrics) depositRound(outcome string) { sm.rounds.WithLabelValues(outcome).Inc() }

func (sm *serverMetrics) depositCoin(status pb.DepositStatus) {
	sm.coins.WithLabelValues(depositStatusName(status)).Inc()
}

// Describe implements prometheus.Collector.
func (sm *serverMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sm.pendingCoins, sm.pendingValue, sm.pendingBearer, sm.held, sm.credited, sm.lost, sm.price, sm.space, sm.keysets} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (sm *serverMetrics) Collect(ch chan<- prometheus.Metric) {
	s := sm.s
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := s.spent.Stats(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(sm.pendingCoins, prometheus.GaugeValue, float64(st.Pending))
		ch <- prometheus.MustNewConstMetric(sm.pendingValue, prometheus.GaugeValue, float64(st.PendingValue))
		ch <- prometheus.MustNewConstMetric(sm.pendingBearer, prometheus.GaugeValue, float64(st.PendingBearer))
		ch <- prometheus.MustNewConstMetric(sm.credited, prometheus.CounterValue, float64(st.CreditedValue))
		ch <- prometheus.MustNewConstMetric(sm.lost, prometheus.CounterValue, float64(st.LostValue))
	} else {
		ch <- prometheus.NewInvalidMetric(sm.pendingCoins, err)
	}
	ch <- prometheus.MustNewConstMetric(sm.held, prometheus.GaugeValue, float64(s.policy.Held()))
	if cur, _, err := s.book.Current(s.cfg.Clock()); err == nil {
		for _, r := range []struct {
			name string
			v    uint64
		}{
			{"per_call", cur.Rates.PerCall},
			{"store_per_gib_month", cur.Rates.StorePerGiBMonth},
			{"read_per_gib", cur.Rates.ReadPerGiB},
			{"write_per_gib", cur.Rates.WritePerGiB},
		} {
			ch <- prometheus.MustNewConstMetric(sm.price, prometheus.GaugeValue, float64(r.v), r.name, cur.Unit)
		}
	}
	u := s.shares.Usage()
	for _, k := range []struct {
		kind string
		v    uint64
	}{{"capacity", u.Capacity}, {"stored", u.Stored}, {"allocated", u.Allocated}, {"available", u.Available}} {
		ch <- prometheus.MustNewConstMetric(sm.space, prometheus.GaugeValue, float64(k.v), k.kind)
	}
	known, revoked := s.keysets.counts()
	ch <- prometheus.MustNewConstMetric(sm.keysets, prometheus.GaugeValue, float64(known), "known")
	ch <- prometheus.MustNewConstMetric(sm.keysets, prometheus.GaugeValue, float64(revoked), "revoked")
}

// revenueStore is the spent set as the paywall's protocol.SpentStore,
// counting the value of every request recorded (a replay is not counted).
type revenueStore struct {
	*spentset.Store
	revenue prometheus.Counter
}

// Record records a paid request's coins and counts their value.
func (r revenueStore) Record(ctx context.Context, id [protocol.RequestIDSize]byte, digest [protocol.DigestSize]byte, spends []*coin.Spend, value uint64) (*protocol.SpentRequest, error) {
	rec, err := r.Store.Record(ctx, id, digest, spends, value)
	if err == nil && !rec.Replay {
		r.revenue.Add(float64(value))
	}
	return rec, err
}

var _ protocol.SpentStore = revenueStore{}
