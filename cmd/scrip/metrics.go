package main

import (
	"flag"
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scripnet/scrip/node"
)

// metricsOpts are the flags of a role's metrics endpoint: the same three
// for scrip mint, serve and client.
type metricsOpts struct {
	addr  *string
	open  *bool
	hosts roleList
}

// metricsFlags adds --metrics, --metrics-open and --metrics-host to fs.
func metricsFlags(fs *flag.FlagSet) *metricsOpts {
	o := &metricsOpts{}
	o.addr = fs.String("metrics", "", "address of an HTTP endpoint serving metrics at /metrics, such as 127.0.0.1:9464 (default: none); "+
		"it wants the bearer token of the directory's "+node.MetricsTokenFile+" file")
	o.open = fs.Bool("metrics-open", false, "serve /metrics without a token, to whoever reaches the --metrics address")
	fs.Var(&o.hosts, "metrics-host", "host name the Host header of metrics requests may carry besides localhost and IP literals "+
		"(the name Prometheus scrapes a non-loopback --metrics address by); repeat or separate with commas")
	return o
}

// check refuses --metrics-open or --metrics-host without --metrics.
func (o *metricsOpts) check() error {
	if *o.addr == "" && (*o.open || len(o.hosts) > 0) {
		return fmt.Errorf("%w: --metrics-open and --metrics-host need --metrics ADDR", errUsage)
	}
	return nil
}

// start starts the endpoint if --metrics was given; nil if not.
func (o *metricsOpts) start(dir string, reg *prometheus.Registry) (*node.MetricsEndpoint, error) {
	if *o.addr == "" {
		return nil, nil
	}
	return node.ServeMetrics(node.MetricsConfig{
		Addr:      *o.addr,
		Registry:  reg,
		TokenFile: filepath.Join(dir, node.MetricsTokenFile),
		Open:      *o.open,
		Hosts:     o.hosts,
	})
}
