package election

// EnsembleAddrs returns the addresses of the package's test ensemble, for
// the Examples (package election_test). It exists only in this package's
// test binary.
func EnsembleAddrs() []string { return ens.Addrs() }
