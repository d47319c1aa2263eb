// Package cache keeps a local, event-driven copy of ZooKeeper nodes, as
// Curator's CuratorCache and NodeCache do: Tree follows a subtree
// (optionally depth-bounded), Node a single node. Each is loaded once,
// then kept current by watches; it rides out connection loss and is
// resynced in full after a reconnect and on a new session, reporting only
// real differences as NodeAdded, NodeUpdated and NodeRemoved events.
//
// All watch events of a session arrive through one listener
// (resilience.Session.AddNodeListener), so a cache of many nodes costs no
// goroutine per node. Nodes are read with bounded concurrency
// (WithConcurrency).
package cache
