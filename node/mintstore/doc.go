// Package mintstore implements a mint's durable state in one bbolt file:
// [Store] is a protocol.MintStore and protocol.FundingLedger (issuance
// rows, the spent set, funding accounts, server balances, swap and payout
// records), and [Keys] keeps the mint's keysets in the same file and a
// protocol.MintKeyring in step with it (generation, rotation, revocation,
// pruning). The store also counts, per denomination key, the coins issued
// and spent ([Store.Audit]), and gives holders of coins of a revoked
// keyset their value back ([Store.Recoup]).
//
// # Transactions
//
// Every method of the protocol.MintStore interface is one bbolt write
// transaction (db.Update), committed and synced before the method
// returns: the mint releases a blind answer, or tells a server its coins
// are credited, only after that. A method that returns an error has
// changed nothing. bbolt runs one write transaction at a time, so
// concurrent calls behave as if run in turn: of many calls committing one
// (key, nonce) with different challenges, exactly one inserts its row and
// is charged; the others find that row and are refused. Behaviour is that
// of protocol.MemMintStore, call for call (the package's conformance
// tests run the same cases, and random sequences of calls, against both),
// except that:
//
//   - a method whose context has ended before it starts returns ctx.Err();
//   - a field longer than the layout holds (a unit over 255 bytes; a
//     server ID, spend, destination or receipt over 65535) is refused;
//   - an empty destination or receipt of a payout reads back as nil;
//   - pending payouts are listed sorted by server and request ID;
//   - rows and spent entries of keysets that Prune has closed are refused
//     ([ErrIssueClosed], [ErrDepositClosed]), and new rows of keysets
//     retired after a restore ([ErrKeysetRetired]).
//
// # Layout
//
// One bucket per kind of record; integers big-endian.
//
//	rows            key ‖ nonce → keyset ID, amount, challenge hash, b, s, seq
//	nonces          nonce ‖ seq → key       (Restore: a nonce's rows in order)
//	funding         account ID → value, remaining, unit
//	spent           coin_pub → keyset ID, amount, digest, unit, server, spend
//	spent-keyset    keyset ID ‖ coin_pub → ∅ (pruning by keyset)
//	balances        len16(server) ‖ server ‖ unit → amount
//	swaps           request ID → digest, input coin_pubs, output row keys
//	payouts         len16(server) ‖ server ‖ request ID → state, digest, amount, unit, destination, receipt
//	payouts-pending same key → ∅
//	tally           keyset ID ‖ amount → counts (withdrawn, swap outputs, deposited, swap inputs, recouped, pruned rows, pruned spent)
//	keysets         keyset ID → windows, amount ‖ key per denomination, keyset secret
//	revoked         keyset ID → time of revocation
//	closed          keyset ID → flags: rows pruned, spent entries pruned, retired after a restore
//	recouped        key ‖ nonce → coin_pub of the coin recouped from the row
//	meta            "version" → 1; "guard" → instance ID, epoch; "backup" → marker (in backups only)
//
// The file holds the keysets' secret keys unencrypted: [Open] creates it
// with mode 0600 and narrows a wider mode.
//
// # Pruning
//
// [Store.Prune] (or [Keys.Prune]) deletes the issuance rows of a keyset
// once its issue window is over (for a revoked keyset, once its deposit
// window is over, since recoup needs them), its spent-set entries once its
// deposit window is over, and then the keyset itself, and nothing else.
// A keyset is marked closed before its records go, and the store refuses
// to add rows or spent entries of a closed keyset, so a call that raced
// the end of a window cannot find an empty slot where a record was.
//
// # Audit and recoup
//
// [Store.Audit] compares, per denomination key, the coins issued with
// those spent (deposited, swapped or recouped), from counters kept in the
// same transactions as the records, which pruning does not lower. More
// spent than issued means someone else signs with the key: it leaked.
// The mint then revokes the keyset ([Keys.Revoke]); [Store.Recoup] lets
// the holders of its unspent coins prove that the mint issued them (their
// row's challenge hash) and that they are unspent, marks them spent and
// credits their value to a funding account, such as a voucher.
//
// [Store.Check] verifies that indexes, counters and funding agree with the
// records.
//
// # Backups and restores
//
// A database put back from a copy has lost the rows committed after the
// copy; a nonce answered then could be answered again under other
// challenges, which reveals the key. So [Open] retires every keyset of a
// database it finds restored: the store inserts no new row of it
// ([ErrKeysetRetired]) but answers the rows it holds and spends its coins;
// [Keys.Retired] tells the mint, and [Keys.Rotate] makes a fresh keyset.
// A restore is recognised by the backup marker that [Store.Backup],
// [Store.BackupFile] and [BackupFile] put in their copies (and the live
// database never carries), or by a database that is not in the epoch its
// guard file names (see [GuardReport], [WithGuardFile]). guard.go states
// what it cannot catch.
package mintstore
