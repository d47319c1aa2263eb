// Package losstest holds tests, against a real ensemble of its own, of the
// faults that decide whether a holder steps down before anyone else can
// take over: a follower cut off from its leader while its clients still
// reach it (with a session timeout shorter than syncLimit x tickTime), and
// a holder whose link goes silent while it is writing megabytes. It has no
// code of its own.
package losstest
