// Package node implements scrip's roles as embeddable parts: a mint, a
// storage server and a client node, wiring the coin and protocol packages
// to durable stores (node/mintstore, node/spentset, node/shares,
// node/wallet), libp2p hosts, pricing agents (node/pricing) and the file
// pipeline (node/files).
//
// Peers of a grid find each other through a static announcements file
// ([Announcement], [ReadAnnouncements], [WriteAnnouncement]).
//
// # Hosts
//
// [NewHost] starts a role's libp2p host: its Ed25519 identity key is kept
// in a file of the role's directory ([IdentityFile], made with mode 0600
// on the first run), it listens on TCP and QUIC ([DefaultListenAddrs]:
// 127.0.0.1 on any port), and its resource manager bounds scrip's
// protocols (protocol.NewResourceManager). [Connect] dials the peer of an
// announcement and keeps its addresses.
//
// # Mint
//
// [NewMint] runs a mint from a directory: a mintstore file with its
// keysets (the first made at the first start, the next ones rotated in the
// background, old ones pruned), prepaid-voucher funding, and the mint
// service on the host. The mint signs its keysets with its libp2p key, so
// the key that signs them is in its peer ID ([MintIdentity]) and an
// announcement is all a server or a client needs to trust them.
//
// Admin calls are not on libp2p but on a local HTTP endpoint
// (MintConfig.AdminAddr, loopback only unless allowed): POST /vouchers,
// POST /vouchers/lookup (the code in the body), GET /keysets,
// POST /keysets/rotate, POST /keysets/{id}/revoke, GET /audit, GET /backup
// and GET /metrics. Every call, /metrics included, wants the bearer token
// of the admin file in the mint's directory ([MintAdminFile],
// [ReadAdminInfo]); [AdminClient] makes the calls.
//
// # Storage server
//
// [NewServer] runs a storage server from a directory: a share store
// (node/shares) of the capacity offered, a spent set (node/spentset), and
// the storage service behind a protocol.Paywall. It connects to the mint
// of its configuration, checks coins offline with the mint's keysets
// (refreshed periodically; revoked ones refused), and:
//
//   - asks its pricing agent (pricing.TargetAgent, or an external program)
//     for rates every SchedulePeriod, signs them into a schedule valid for
//     ScheduleValidity and publishes it; earlier schedules are honoured
//     until they expire, across restarts ([ServerSchedulesFile]);
//   - deposits the coins it took at the mint every DepositInterval, and
//     records the mint's verdicts, retrying with a backoff until it has
//     them ([Server.DepositNow]);
//   - takes bearer coins only while their undeposited value stays under
//     its cap; over it, it deposits a call's bearer coins before serving
//     the call, or refuses them (ServerConfig.RefuseOverCap). A deposit
//     the mint does not answer (or credits in part) leaves the coins
//     recorded as credit for the request and the call answered INTERNAL;
//     the client's retry of the same request is served once the mint has
//     confirmed them.
//
// [Server.Balance] asks the mint what it credited.
//
// # Client node
//
// [NewClient] runs a client node from a directory: its wallet
// (node/wallet, [ClientWalletFile]), a libp2p host with a fresh identity
// every session (never stored), the mint's keysets checked against the key
// in the mint's peer ID, connections to the announced servers with their
// verified price schedules, and a pricing.Market with its Scores. It pays
// every call from the wallet (coins reserved before they leave, settled by
// the server's answer, swapped at the mint for change when no subset pays
// exactly), and:
//
//   - [Client.Fund] withdraws coins paid by a voucher;
//   - [Client.Put] encrypts and erasure-codes a file (node/files), places
//     its N shares on the first servers of its permuted ring that the
//     market accepts, at least happy of them distinct, and returns the
//     capability and a report; a server paid for an allocation that it
//     does not make (or says it holds shares of the new file already,
//     which no server can), or whose shares it then does not take, is
//     scored for coins taken without service and its shares go
//     elsewhere;
//   - [Client.Get] walks the whole ring, DownloadParallelism servers at a
//     time, until k shares check out; a corrupt share is reported to its
//     server, scores it down and is fetched elsewhere. A share a server
//     lists twice is read once; a server's word on a share's number is
//     checked with the segments (a share stopped part-way is not), so
//     blocks of one number from several servers are candidates for it,
//     and spares start with a window of one block;
//   - housekeeping, every Tick, reconnects servers and refreshes their
//     prices, resumes swaps a crash interrupted, swaps the bearer coins of
//     calls that never got an answer (after RefreshAfter), tops up
//     small pools of coins designated to the most used servers, and reads
//     the mint's keysets again, recouping the wallet's coins of any keyset
//     the mint has revoked ([Client.Recoup]).
//
// The market's memory survives restarts: the client saves its history
// (the ceiling and when it was last computed, the servers' prices and the
// calls they served, their scores; pricing.History) in [ClientMarketFile]
// on every tick and at Close, and restores it at start, so the ceiling
// rises at most 10 % a day across sessions (a day away counts as a day)
// and a penalised server stays penalised. Calls served count toward a
// server's weight in the ceiling only when they deliver: allocations
// made, shares whose header or whole body checks out, not Lists, which
// anyone can answer. A limit of 0 (a ceiling of 0: free announcements)
// pays nothing. A file it cannot use is logged and ignored. Once the market
// has history (an earlier session's, or a day of this one), a download
// pays no server more than the ceiling's price of the call plus the
// premium, unless a download budget allows it; before, it may spend at
// most 1/[DefaultDownloadShare] of the wallet.
//
// Its local HTTP API (loopback only; URL in [ClientAPIFile], bearer token
// in [ClientTokenFile]) serves the CLI: GET /status, /servers, /wallet,
// /wait and /metrics, POST /put, /get ({"capability": CAP}), /fund
// ({"voucher": CODE}), /wallet/recoup and /wallet/backup. Every call wants
// the token.
// Errors are one line for a person with a kind ([APIErrorKind]).
//
// # Metrics
//
// Each role keeps its metrics in a Prometheus registry of its own
// ([Mint.Registry], [Server.Registry]): calls by operation and outcome,
// and the figures of its trade (the mint: value issued, deposits credited,
// payouts; the server: revenue, deposits pending and credited, prices,
// coins refused by reason, space; the client: calls, coins, spending,
// prices, wallet value, [Client.Registry]). The mint serves them on its
// admin endpoint and the client on its API, both behind their tokens; a
// server on ServerConfig.MetricsAddr, with the Host and cross-site checks
// below but no token. [ServeMetrics] serves any role's registry on an
// endpoint of its own, for Prometheus: it wants the bearer token of the
// role directory's [MetricsTokenFile] (made with mode 0600 at the first
// start and kept), unless MetricsConfig.Open; the scrip command's
// --metrics flag of each role uses it.
//
// # Local HTTP endpoints
//
// Every local HTTP endpoint (the mint's admin endpoint, the client's API,
// metrics endpoints) refuses with 403, before it looks at a token,
// requests whose Host header does not name it (DNS rebinding: only
// "localhost", a loopback IP literal, the address it is bound to — any IP
// literal if bound to every interface — or a name configured for it, with
// its port) and browsers' cross-site requests (an Origin header of
// another origin, or Sec-Fetch-Site other than same-origin or none). No
// answer carries CORS headers; every answer is no-store. Tokens are
// compared in constant time; token files are mode 0600. Secrets (voucher
// codes, capabilities) travel in request bodies, never in URLs.
// [NewLocalHTTPClient] is the client that carries tokens to these
// endpoints: no proxy, no redirects.
package node
