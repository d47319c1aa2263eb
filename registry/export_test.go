package registry

// EnsembleAddrs gives the external tests (the examples) the addresses
// of the package's test ensemble, started by TestMain.
func EnsembleAddrs() []string { return ens.Addrs() }
