// Package lock provides distributed locks on ZooKeeper that tell their
// holders when they lose: Mutex, RWMutex, Semaphore and MultiLock.
//
// # Leases
//
// Every acquisition returns a *Lease. Its Context keeps the values and the
// trace span of the context the lock was acquired with (so spans started
// under the lease nest under the acquisition), but not its cancellation:
// it is cancelled when the lease ends, and context.Cause (also Err) says
// why: an error wrapping ErrReleased after Release or the session's Close,
// or one wrapping ErrLeaseLost when the holder can no longer be sure it
// holds the lock, according to the loss policy (WithLossPolicy):
//
//   - resilience.LoseOnSuspend (the default, and the safe one): lost as
//     soon as the connection is suspended. The client notices a dead link
//     well before the ensemble can expire the session and hand the lock to
//     someone else, so the old holder steps down first. When the same
//     session comes back, the lease's node is deleted so the next waiter
//     proceeds.
//   - resilience.LoseOnSessionLoss: survives suspensions and is lost only
//     when the session is lost, when the node is found gone after a
//     reconnect, or at the session's SafeUntil if still suspended then.
//     Fewer false step-downs, but a weaker guarantee: if the ensemble
//     expires the session by other means (an operator, a forced expiry),
//     another client may acquire the lock before this one hears of it. Use
//     fencing tokens if that matters.
//
// Release deletes the lease's node. On a lease already lost it returns that
// loss (wrapping ErrLeaseLost) at once; a second Release returns an error
// wrapping ErrReleased; if the session ends during the release the node
// went with it (ErrLeaseLost); if ctx ends before the node is deleted, the
// deletion goes on in the background.
//
// Lease.Guarded runs ops (*zk.CreateRequest, *zk.SetDataRequest,
// *zk.DeleteRequest, *zk.CheckVersionRequest) as one transaction together
// with a check that the lease's node still exists, so a write to state
// kept in ZooKeeper applies only while the lock is held. On a lease
// already ended, or a node gone, it returns an error wrapping ErrLeaseLost
// and nothing is written. If the lease is lost while the transaction is in
// flight it also returns ErrLeaseLost, but the transaction may have been
// applied (while the node still existed); if the connection breaks with
// it in flight and nothing shows whether it ran, the error wraps
// resilience.ErrOutcomeUnknown. It is never run twice.
//
// # Fencing
//
// Every lease carries a fencing token (Lease.Token): the czxid of its
// node, read at acquisition (never 0, and still there after the lease
// ends), which is larger for every later holder of the same Mutex (or
// write side of an RWMutex). Concurrent holders (RWMutex readers,
// Semaphore leases) have different tokens, ordered by acquisition, none of
// which excludes the others. Downstream systems can reject writes carrying
// an older token; package github.com/zkrecipes/zkrecipes/fence is a
// reference store that does. No loss policy protects a holder whose own
// process pauses (a GC pause, a stopped VM) for longer than its margin: it
// resumes believing it holds, after the ensemble has handed the lock on.
// Only fencing catches that (docs/fencing.md).
//
// # Waiting
//
// Mutex and RWMutex waiters watch only the node they wait for (no herd);
// a Semaphore's acquirers take turns under a mutex, and the one counting
// watches the leases. Waiters keep their place through connection loss and
// re-enter the queue on a new session after expiry. A cancelled or failed
// acquisition leaves no node behind.
//
// # Other clients on the same lock
//
// Node names are those of Apache Curator (InterProcessMutex "lock-",
// InterProcessReadWriteLock "__READ__"/"__WRIT__", InterProcessSemaphoreV2
// "locks/" and "leases/"), so Go and Java services can share a lock: each
// sees and waits for the other's contenders.
//
// Kazoo (Python) interoperates one way only unless configured. This
// package sees Kazoo's contenders ("__lock__", "__rlock__") and waits for
// them, but Kazoo's default Lock recognises only its own "__lock__" nodes:
// it does not see ours (nor Curator's), so a Go holder and a default Kazoo
// holder hold the same lock at once (measured here: Go and default Kazoo
// contenders held together 5,567 times in 60 s; with the pattern below,
// never). Give every Kazoo Lock the pattern of our nodes:
//
//	zk.Lock(path, identifier, extra_lock_patterns=["-lock-"])  # Kazoo >= 2.7.1
//
// If Curator shares the lock too, that is not enough: Curator cannot order
// Kazoo's "__lock__" nodes and takes a lock Kazoo holds. Then Kazoo's nodes
// must also be named "-lock-" (a subclass of kazoo.recipe.lock.Lock with
// _NODE_NAME = "-lock-", as this package's interop test does). By Kazoo's
// source (2.8), its ReadLock needs extra_lock_patterns=["__WRIT__"] and its
// WriteLock ["__READ__", "__WRIT__"] to see an RWMutex's contenders; the
// interop tests do not cover Kazoo's read/write locks. Kazoo's Semaphore
// has a layout of its own and does not share leases with Semaphore.
//
// # Telemetry
//
// Providers come from WithTracerProvider and WithMeterProvider, else from
// the session; the scope is ScopeName. Every acquisition (Lock, TryLock,
// RLock, TryRLock, Acquire, TryAcquire) is a span zkrecipes.lock.acquire,
// started from the caller's context, with zkrecipes.lock.kind (mutex,
// read, write, semaphore), zkrecipes.path, and when done
// zkrecipes.outcome: ok, refused (a Try call that found the lock held),
// canceled (the caller's context ended) or error, with error.type for an
// error. An acquired span also has zkrecipes.lock.node and
// zkrecipes.lock.token. Metrics:
//
//   - zkrecipes.lock.wait.duration (s): time to acquire or give up, by
//     kind, zkrecipes.outcome and error.type;
//   - zkrecipes.lock.acquisitions: leases acquired, by kind;
//   - zkrecipes.lock.held: leases held now, by kind;
//   - zkrecipes.lock.hold.duration (s): how long leases were held, by kind
//     and zkrecipes.end (released or lost); its count by zkrecipes.end
//     counts the losses.
package lock
