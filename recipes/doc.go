// Package recipes holds the smaller ZooKeeper recipes, each built on a
// resilience.Session:
//
//   - Group: membership under a parent node, each member an ephemeral
//     node re-created on a new session.
//   - Barrier and DoubleBarrier: hold waiters back until a node goes, or
//     until N participants have entered (Curator's DistributedBarrier and
//     DistributedDoubleBarrier).
//   - SharedCount: a counter shared with Curator's SharedCount format.
//
// Caches of nodes and subtrees live in package cache; locks, semaphores
// and leader election in packages lock and election; service registration
// in package registry. Connection loss is
// waited out and verified by the session, and the loss of the session an
// ephemeral node belongs to surfaces as an error wrapping
// resilience.ErrSessionLost.
package recipes
