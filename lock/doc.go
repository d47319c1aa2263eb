// Package lock provides distributed locks on ZooKeeper that tell their
// holders when they lose: Mutex, RWMutex, Semaphore and MultiLock.
//
// Every acquisition returns a *Lease. Its Context is cancelled the moment
// the holder can no longer be sure it holds the lock, according to the
// LossPolicy:
//
//   - LoseOnSuspend (the default, and the safe one): cancelled as soon as
//     the connection is suspended. The client notices a dead link after two
//     thirds of the session timeout, before the ensemble can expire the
//     session and hand the lock to someone else, so the old holder steps
//     down first. When the same session comes back, the lease's node is
//     deleted so the next waiter proceeds.
//   - LoseOnSessionLoss: survives suspensions and is cancelled only when the
//     session is Lost. Fewer false step-downs, but a weaker guarantee: the
//     holder learns of the loss at the earliest when the client gives the
//     session up (by default a margin before the ensemble can expire it,
//     counted from the ping before the last one answered); if the ensemble
//     expires the session by other means (an operator, a forced expiry),
//     another client may acquire the lock before this one hears of it. Use
//     fencing tokens if that matters.
//
// Every lease carries a fencing token (Token): the czxid of its node, read
// at acquisition (never 0, and still there after the lease ends), which is
// larger for every later holder of the same lock. Downstream systems can
// reject writes carrying an older token; package
// github.com/zkrecipes/zkrecipes/fence is a reference store that does. No
// loss policy protects a holder whose own process pauses (a GC pause, a
// stopped VM) for longer than its margin: it resumes believing it holds,
// after the ensemble has handed the lock on. Only fencing catches that
// (docs/fencing.md). For state kept in ZooKeeper itself,
// Lease.Guarded runs a transaction that applies only while the lease's node
// still exists.
//
// Waiters watch only their predecessor (no herd), keep their place through
// connection loss and re-enter the queue on a new session after expiry. A
// cancelled or failed acquisition leaves no node behind.
//
// Node names are those of Apache Curator (InterProcessMutex "lock-",
// InterProcessReadWriteLock "__READ__"/"__WRIT__", InterProcessSemaphoreV2
// "locks/" and "leases/"), so Go and Java services can share one lock; Kazoo
// contenders ("__lock__", "__rlock__") are honoured too.
package lock
