// Package node implements scrip's roles as embeddable parts: a mint, a
// storage server and a client node, wiring the coin and protocol packages
// to durable stores (node/mintstore, node/spentset, node/shares,
// node/wallet), libp2p hosts, pricing agents (node/pricing) and the file
// pipeline (node/files).
//
// Peers of a grid find each other through a static announcements file
// ([Announcement], [ReadAnnouncements], [WriteAnnouncement]).
package node
