// Package interop drives the real Apache Curator (Java) and Kazoo (Python)
// ZooKeeper client libraries from Go tests, so tests can prove that this
// module's recipes interoperate with them on the same znodes.
//
// Curator(t) and Kazoo(t) each start one long-running child process (a JVM
// running java/Driver.java, or /usr/bin/python3 running kazoo/driver.py)
// that hosts any number of named ZooKeeper clients, so one process can play
// several contenders. The process is stopped by t.Cleanup. Both skip the
// test under testing.Short and fail it, naming the Debian packages to
// install, when Java, Curator or Kazoo are missing.
//
// # Protocol
//
// Go writes one request per line to the driver's stdin:
//
//	<reqid> <cmd> <arg>...
//
// Fields are separated by single spaces; no field may be empty or contain
// white space. Arguments that are JSON travel as standard base64 (RFC 4648,
// with padding); all other arguments (client names, paths, numbers,
// participant ids, service names and ids) are sent as they are. Every
// command except ping and quit takes the client name as its first argument.
//
// The driver runs every request on its own thread and answers, in whatever
// order requests complete, with one of
//
//	<reqid> ok [<payload>]
//	<reqid> err <message>
//
// A payload or message is the rest of the line and may contain spaces. An
// acquisition that does not succeed in time answers exactly "err timeout",
// which Do reports as an error matching ErrTimeout. Asynchronous events are
// lines
//
//	event <client> <kind> <detail> <unixNanos>
//
// and at start-up the driver writes one line "ready <key=value>...", naming
// the library versions. Timestamps (in payloads and events) are Unix
// nanoseconds from the realtime clock (Java Instant.now, Python
// time.time_ns), taken right after an acquisition succeeded or right before
// a release is called, so they can be compared across processes.
//
// Commands (C: Curator only; both drivers otherwise):
//
//	ping                                          -> ok pong
//	connect <client> <connectString> <sessionTimeoutMs> [connectionTimeoutMs]
//	                                              -> ok (once connected)
//	close <client>                                -> ok (session closed; its locks, leases,
//	                                                 latch and registrations go with it)
//	mutex.acquire <client> <path> <timeoutMs> [kazoo options]
//	                                              -> ok <lockNodePath> <unixNanos>
//	mutex.release <client> <path>                 -> ok <unixNanos>
//	mutex.participants <client> <path>         C  -> ok <node> <node>... (Curator's sorted view)
//	rwlock.acquire <client> <path> read|write <timeoutMs>
//	                                           C  -> ok <lockNodePath> <unixNanos>
//	rwlock.release <client> <path> read|write  C  -> ok <unixNanos>
//	semaphore.acquire <client> <path> <maxLeases> <timeoutMs>
//	                                           C  -> ok <leaseId> <unixNanos>
//	semaphore.release <client> <leaseId>       C  -> ok <unixNanos>
//	latch.start <client> <path> <participantId>
//	                                           C  -> ok
//	latch.leader <client>                      C  -> ok [<leaderParticipantId>]
//	latch.has <client>                         C  -> ok true|false
//	latch.close <client>                       C  -> ok
//	discovery.register <client> <basePath> <base64 JSON ServiceInstance>
//	                                           C  -> ok <id>
//	discovery.unregister <client> <basePath> <service> <id>
//	                                           C  -> ok
//	discovery.query <client> <basePath> <service>
//	                                           C  -> ok <base64 JSON array of instances>
//	discovery.names <client> <basePath>        C  -> ok <base64 JSON array of names>
//	counter.get <client> <path>                   -> ok <int>
//	counter.set <client> <path> <int>             -> ok
//	quit                                          -> ok bye, then the driver exits
//
// Curator's mutex is InterProcessMutex; each (client, path) has its own
// thread in the driver, because Curator ties a held lock to the thread that
// acquired it. The lock node path comes from the mutex itself ("-" if
// unknown). Kazoo's mutex is kazoo.recipe.lock.Lock created with
// extra_lock_patterns=["-lock-"], so that it honours Curator's (and this
// module's) "-lock-" contenders; options change that: "extra=p1,p2" sets the
// extra patterns (an empty list with "extra="), "node=NAME" replaces Kazoo's
// "__lock__" node name (e.g. "node=-lock-", which Curator can sort), and
// "id=S" sets the identifier Kazoo stores in the node.
//
// Semaphores are InterProcessSemaphoreV2; the lease id is the lease node's
// name. The latch is a LeaderLatch (one per client) closed with
// CloseMode.NOTIFY_LEADER. Discovery uses
// ServiceDiscoveryBuilder.builder(Map.class) with a
// JsonInstanceSerializer<Map>, which parses the instances Go sends and
// formats those it returns. Counters are Curator SharedCount (seed 0) and
// Kazoo Counter(support_curator=True): a 4-byte big-endian int. Kazoo's
// Counter can only add, so the Kazoo driver's counter.set writes the four
// bytes itself with a versioned set.
//
// Kazoo's connect ignores connectionTimeoutMs and passes the session
// timeout, in seconds, as KazooClient's timeout.
//
// # Known incompatibilities
//
// The tests in this package pin down two facts about the real libraries:
//
//   - Curator orders lock nodes by the text after their last "lock-". A
//     Kazoo node, "<uuid hex>__lock__<seq>", has none, so Curator sorts it by
//     its whole name, after its own nodes, and takes a mutex Kazoo holds.
//     Kazoo with extra_lock_patterns=["-lock-"] does wait for Curator.
//     Kazoo and Curator exclude each other only when Kazoo's node name is
//     "-lock-" (option node=-lock-).
//   - Kazoo's Counter creates a missing counter node with no data (and
//     reads it as 0); Curator's SharedCount fails on it
//     (BufferUnderflowException). Curator creates it with its seed, 0 as
//     four bytes.
//
// The compiled Curator driver is cached in memory for the test process
// (javac takes one to two seconds; a JVM then starts in about 0.3s) and
// written into each driver's t.TempDir; Cleanup drops the cache.
//
// Event kinds:
//
//	state   <ConnectionState>  Curator: CONNECTED, SUSPENDED, RECONNECTED, LOST, READ_ONLY;
//	                           Kazoo: CONNECTED, SUSPENDED, LOST
//	leader  true|false         the client's LeaderLatch gained or lost leadership
package interop
