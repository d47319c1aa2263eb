package zktest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// systemZooKeeperJar is where Debian's `zookeeper` package installs the
// server jar. Its manifest Class-Path names the jars it depends on.
const systemZooKeeperJar = "/usr/share/java/zookeeper.jar"

// installation is a ZooKeeper installation that can be run with java.
type installation struct {
	java      string
	classpath []string
	source    string // how it was found, for messages
}

// lookupEnv abstracts the environment for discovery, so it can be tested.
type lookupEnv struct {
	getenv    func(string) string
	lookPath  func(string) (string, error)
	systemJar string
}

func osLookupEnv() lookupEnv {
	return lookupEnv{getenv: os.Getenv, lookPath: exec.LookPath, systemJar: systemZooKeeperJar}
}

// findInstallation locates java and ZooKeeper.
func findInstallation(env lookupEnv) (*installation, error) {
	cp, source, err := findZooKeeper(env)
	if err != nil {
		return nil, err
	}
	java, err := findJava(env)
	if err != nil {
		return nil, err
	}
	return &installation{java: java, classpath: cp, source: source}, nil
}

// findJava returns $JAVA_HOME/bin/java if it exists, else java on PATH.
func findJava(env lookupEnv) (string, error) {
	if home := env.getenv("JAVA_HOME"); home != "" {
		p := filepath.Join(home, "bin", "java")
		if isExecutable(p) {
			return p, nil
		}
	}
	p, err := env.lookPath("java")
	if err != nil {
		return "", fmt.Errorf("%w (%v)", ErrJavaNotFound, err)
	}
	return p, nil
}

// findZooKeeper returns the class path to run a ZooKeeper server with,
// looking in order at $ZOOKEEPER_HOME, Debian's /usr/share/java/zookeeper.jar
// and a zkServer.sh on PATH.
func findZooKeeper(env lookupEnv) (classpath []string, source string, err error) {
	if home := env.getenv("ZOOKEEPER_HOME"); home != "" {
		jars := homeJars(home)
		if !hasZooKeeperJar(jars) {
			return nil, "", fmt.Errorf("%w: ZOOKEEPER_HOME=%s holds no zookeeper*.jar in lib/ or at its top level", ErrZooKeeperNotFound, home)
		}
		return addBinding(jars, home), "ZOOKEEPER_HOME=" + home, nil
	}
	if env.systemJar != "" && isFile(env.systemJar) {
		return addBinding([]string{env.systemJar}, ""), env.systemJar, nil
	}
	if sh, err := env.lookPath("zkServer.sh"); err == nil {
		if real, err := filepath.EvalSymlinks(sh); err == nil {
			sh = real
		}
		home := filepath.Dir(filepath.Dir(sh))
		if jars := homeJars(home); hasZooKeeperJar(jars) {
			return addBinding(jars, home), sh, nil
		}
	}
	return nil, "", fmt.Errorf("%w (looked at $ZOOKEEPER_HOME, %s and zkServer.sh on PATH)", ErrZooKeeperNotFound, systemZooKeeperJar)
}

// homeJars lists the jars of an unpacked ZooKeeper distribution.
func homeJars(home string) []string {
	var jars []string
	for _, pattern := range []string{filepath.Join(home, "*.jar"), filepath.Join(home, "lib", "*.jar")} {
		m, _ := filepath.Glob(pattern)
		sort.Strings(m)
		jars = append(jars, m...)
	}
	return jars
}

func hasZooKeeperJar(jars []string) bool {
	for _, j := range jars {
		b := filepath.Base(j)
		if strings.HasPrefix(b, "zookeeper") && !strings.HasPrefix(b, "zookeeper-jute") {
			return true
		}
	}
	return false
}

// slf4jBindings are the jar name prefixes of SLF4J backends.
var slf4jBindings = []string{
	"logback-classic", "slf4j-simple", "slf4j-nop", "slf4j-log4j12",
	"slf4j-reload4j", "slf4j-jdk14", "log4j-slf4j-impl", "log4j-slf4j2-impl",
}

// addBinding appends an SLF4J backend to jars unless they already hold one.
// slf4j-simple is preferred (it honours the log level zktest passes and
// writes to stderr, which zktest captures into the log file); slf4j-nop is
// the fallback. Without any, SLF4J prints a warning and drops all logs.
func addBinding(jars []string, home string) []string {
	for _, j := range jars {
		b := filepath.Base(j)
		for _, p := range slf4jBindings {
			if strings.HasPrefix(b, p) {
				return jars
			}
		}
	}
	var dirs []string
	if home != "" {
		dirs = append(dirs, filepath.Join(home, "lib"), home)
	}
	dirs = append(dirs, filepath.Dir(systemZooKeeperJar))
	for _, name := range []string{"slf4j-simple", "slf4j-nop"} {
		for _, d := range dirs {
			if p := filepath.Join(d, name+".jar"); isFile(p) {
				return append(jars, p)
			}
			m, _ := filepath.Glob(filepath.Join(d, name+"-*.jar"))
			if len(m) > 0 {
				sort.Strings(m)
				return append(jars, m[len(m)-1])
			}
		}
	}
	return jars
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
