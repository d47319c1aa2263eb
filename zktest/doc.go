// Package zktest runs real Apache ZooKeeper servers for tests: a single
// standalone server or an ensemble of N peers on 127.0.0.1, each behind a
// fault-injecting TCP proxy.
//
// A test starts an ensemble, gives each client under test a Link of its
// own (one private proxy per server) and then breaks things:
//
//	e := zktest.StartEnsemble(t, zktest.WithServers(3))
//	link, err := e.NewLink() // this client's own path to every server
//	s, err := resilience.Connect(ctx, link.Addrs())
//	...
//	link.Blackhole()                      // partition this client (only) from every server
//	link.Heal()                           // and back
//	link.ProxyFor(s.Server()).Blackhole() // cut it off from its server: it moves to another
//	link.SetLatency(50 * time.Millisecond) // slow this client down
//	e.ExpireSession(ctx, s.SessionID())    // the ensemble expires its session, now
//	leader, _ := e.Leader(ctx)
//	leader.Kill() // crash the leader; a new one is elected
//
// Ensemble.Addrs and Server.Proxy are the ensemble's shared proxies: a
// fault there hits every client connected through them, and a client that
// names every server merely moves to another one. Fault one client through
// its Link.
//
// # Requirements
//
// Start needs a Java runtime and a ZooKeeper installation (3.5 or later;
// developed against 3.8). On Debian and Ubuntu both come with
//
//	apt-get update && apt-get install -y zookeeper
//
// which installs /usr/share/java/zookeeper.jar, where zktest looks by
// default. Elsewhere, set ZOOKEEPER_HOME to an unpacked ZooKeeper release.
// When ZooKeeper or java cannot be found, Start's error says so and how to
// install them; it does not skip the test.
//
// # Servers
//
// Each server is a JVM running QuorumPeerMain with a small heap, tuned to
// start quickly: a standalone server serves in well under a second and a
// three-node ensemble in a few seconds. The configuration uses a short
// tickTime (100ms by default, see WithTickTime), so clients may use session
// timeouts as short as two ticks; fsync is disabled. Every server gets its
// own directory (configuration, data, and a log file with its output) under
// the work directory, a temporary directory unless WithDir is used. The
// JVMs run in their own process groups and, on Linux, die with the test
// binary; Close kills them and waits for them.
//
// Server.Stop, Server.Kill and Server.Start stop, crash and restart a
// server with its data intact; Server.Mode, Server.WaitServing,
// Ensemble.WaitServing and Ensemble.Leader observe the ensemble with the
// "srvr" four-letter command sent to the servers' real ports.
//
// # Faults
//
// Clients connect through proxies: a Link per client (Ensemble.NewLink;
// Link.Addrs for its server list), or the ensemble's shared ones
// (Ensemble.Addrs, Ensemble.ConnectString, Server.Addr). Each Proxy, and
// each Link for all of its proxies at once, can drop its connections,
// black-hole traffic (a partition the client notices only by its own
// timeouts), refuse connections and add latency; Heal restores it. The
// proxies also record the id and password of every session established
// through them, which lets Ensemble.ExpireSession close a session on the
// server side the way an expiry would, so tests need not wait out a
// session timeout.
//
// BlackholeRequests and BlackholeReplies (on a Proxy or a Link) cut one
// direction only: what the client sends is lost while notifications still
// arrive, or what the server sends is lost while it still applies the
// client's requests. Server.Pause and Server.Resume suspend and continue a
// server's process (SIGSTOP, SIGCONT), as a long GC pause or a hung host
// would. Server.IsolateFromPeers cuts a server off from the other servers
// while its clients still reach it: every server reaches each other one
// through proxies of its own, which it names in its zoo.cfg. An isolated
// follower keeps answering its clients until its leader has been silent
// for syncLimit ticks (see WithSyncLimit), while the leader may already
// have expired their sessions; RejoinPeers ends the isolation. The
// repository's docs/faults.md lists every fault and what it models.
//
// # Logs
//
// The servers' logs stay out of a test's output: each server writes its
// own log file (Server.LogPath), and a test that fails is shown the last
// lines each server wrote while it ran (20 by default, see
// WithFailureLogLines), each cut to 300 bytes: StartEnsemble does this for
// the ensemble it starts, Ensemble.LogOnFailure for tests sharing one
// ensemble. ZKTEST_LOGS=1 in the environment streams every line to stderr
// (WithLogWriter streams them to a writer of your choice).
//
// A server without a quorum still accepts TCP connections on its client
// port but closes each one as soon as the client sends its connect request,
// and answers "srvr" with "This ZooKeeper instance is not currently serving
// requests"; clients see this as repeated connection loss.
package zktest
