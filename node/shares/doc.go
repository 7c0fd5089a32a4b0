// Package shares implements a storage server's share store on disk: the
// immutable shares of Tahoe-LAFS-like erasure-coded files, each kept in a
// file of its own, leased for a time and deleted when the lease ends.
//
// # Life of a share
//
// [Store.Allocate] reserves space for some shares of a storage index,
// against the capacity the operator offers, and opens them for one writer
// (a libp2p peer). [Store.CheckAllocate] tells beforehand, changing
// nothing, whether an allocation fits, so that a server can refuse with
// NO_SPACE before it takes any coin. The writer fills each share with
// [Store.Write], inside its allocated size, and closes it with
// [Store.CloseShare]: the file is synced and renamed into place
// atomically, and from then on the share is immutable and readable with
// [Store.Read], [Store.List] and [Store.Stat]. [Store.AddLease] extends the
// leases of a storage index's shares; [Store.AdviseCorrupt] notes a
// client's report (the store serves bytes as they are: clients verify
// shares).
//
// A share whose lease has ended is gone at once for every call, and
// [Store.Collect] (run periodically, and when space is short) deletes its
// file. An open share left without a write for too long
// ([WithAbandonAfter]) is deleted and its space released. Time comes from
// the clock of [WithClock].
//
// # On disk
//
// A directory holds shares/<xx>/<storage index in hex>/<share number> for
// closed shares (xx is the first two hex digits), the same below incoming/
// for open ones, and meta.db, a bbolt file with each share's size, state,
// writer and lease end, an index by lease end, and the corruption reports.
// [Open] recomputes the space used from these, repairing what a crash
// left half done; open shares survive a restart.
//
// [Store.Backend] adapts a Store to protocol.StorageBackend, which the
// storage protocol's server serves from.
package shares
