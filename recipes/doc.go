// Package recipes holds the building blocks that the lock, election and
// registry packages share: joining a sequential queue with a protected
// ephemeral node (parents created as containers, only when missing),
// parsing and ordering the queue's children whatever client wrote them
// (Curator, Kazoo, go-zookeeper/zk or us), and waiting for a predecessor to
// go without a herd.
//
// Everything here goes through a resilience.Session, so connection loss is
// waited out and verified, and the loss of the session a queue entry belongs
// to surfaces as an error wrapping resilience.ErrSessionLost.
package recipes
