package election

// EnsembleAddrs returns the addresses of the package's test ensemble, for
// the Examples (package election_test). It exists only in this package's
// test binary. Under -short testkit.Main starts no ensemble and leaves the
// Examples out of the run; one asked for by name (-short -run Example)
// fails here, saying why, rather than passing without ZooKeeper.
func EnsembleAddrs() []string {
	if ens == nil {
		panic("election: the Examples run against the package's test ensemble, which -short does not start; run them without -short")
	}
	return ens.Addrs()
}
