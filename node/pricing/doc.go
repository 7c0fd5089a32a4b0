// Package pricing implements the market logic of scrip: the agents that
// set a storage server's prices, a client's market policy that decides
// which servers it pays and how much, and the client's local scores of
// bad servers. Everything here is pure and deterministic: time comes from
// the caller (State.Now, or a clock option), randomness from an injected
// source, and nothing touches the network. The node signs and publishes
// what an agent answers (protocol.SignSchedule, protocol.PriceBook); this
// package only returns rates.
//
// # Server side: agents
//
// An [Agent] is asked, before each schedule the server publishes, for the
// rates to publish given the server's [State]: capacity, used bytes,
// bytes sold per recent period, the current time and rates. The default,
// [TargetAgent], prices toward a target utilisation of the space offered
// (80 % by default): its level rises as the disk fills and as sales
// outpace the room left, decays as sales stop, and every published rate
// carries a small random jitter (±2 %) so that prices never lock onto one
// quantised value. An operator may set a floor and a cap ([Limits]). The
// control law and its constants are in [TargetAgent]'s documentation.
//
// # External agents
//
// [External] runs any program that speaks newline-delimited JSON on its
// standard input and output: the node writes one [AgentRequest] per line,
// the program answers one [AgentAnswer] per line. A program that cannot
// be started, exits, answers garbage or too late is killed and restarted
// after a backoff, and meanwhile its fallback agent answers:
//
//	→ {"version":1,"id":1,"now":1767225600,"capacity":1000000000000,"used":250000000000,"period_seconds":3600,"sold":[0,5368709120],"current":{"per_call":10,"store_per_gib_month":49500,"read_per_gib":1010,"write_per_gib":990},"default":{"per_call":10,"store_per_gib_month":50213,"read_per_gib":1003,"write_per_gib":992}}
//	← {"id":1,"rates":{"per_call":10,"store_per_gib_month":48000,"read_per_gib":1000,"write_per_gib":1000},"message":"spring sale"}
//
// examples/pricing-agent is such a program.
//
// # Client side: the market
//
// A [Market] learns the prices servers publish ([Market.Observe]) and
// which servers served ([Market.Served]), and keeps a ceiling: per rate,
// the 75th percentile of the prices seen, weighted toward servers that
// served, so that cheap announcements from servers that never deliver do
// not drag it down; it rises at most 10 % a day and falls at once.
// [Market.Select] walks a file's permuted ring (protocol.Ring) and picks
// the first servers within the ceiling and the budget, allowing a premium
// (10 %) in the first ring positions, or says in one line why it cannot:
//
//	pricing: need 7 servers, found 3 of 9 within the ceiling of 120 msat a share (prices seen: 80, 95, 110, 150, 300; 2 above the ceiling, 4 with no price seen)
//
// [Budget] bounds each upload, each download ([Market.Allow]) and all
// payments together ([Market.Charge]). [Market.Bound] fixes the ceiling
// for an operation that cannot choose its servers (a download): each call
// at most the ceiling's price plus the premium.
//
// # Client side: memory across sessions
//
// A market that forgot everything at each start would take the prices
// asked then as the market. [Market.History] returns what it remembers
// (the ceiling and when it was last computed and first set, the servers
// seen most recently with their rates and the calls they served, the
// highest scores), bounded ([MaxHistoryServers], [MaxHistoryScores]);
// [Market.Restore] merges it into a new market, so that the ceiling keeps
// rising at most 10 % a day from where it was, and scores keep decaying
// from their time. [History.MarshalBinary] and [ParseHistory] encode it
// in at most [MaxHistorySize] bytes with a checksum; the decoder treats
// its input as untrusted and refuses anything it would not write
// ([ErrBadHistory]).
//
// # Client side: scores
//
// [Scores] keeps a local, decaying score per server: timeouts, missing or
// corrupt shares, coins taken without service and the mint's evidence add
// points ([Event]), which halve every half-life (a day). A server at or
// above the threshold is penalised: uploads skip it until its score has
// decayed.
package pricing
