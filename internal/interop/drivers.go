package interop

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

//go:embed java/Driver.java
var javaSource []byte

//go:embed kazoo/driver.py
var pythonSource []byte

// InstallHint is the command that installs everything the drivers need on
// Debian and Ubuntu; the constructors' failure messages name it.
const InstallHint = "apt-get update && apt-get install -y libcurator-recipes-java libcurator-discovery-java python3-kazoo"

// javaDir is where Debian installs jars (a variable for tests).
var javaDir = "/usr/share/java"

// curatorJars are the jars the Curator driver runs with, from javaDir, and
// the Debian packages that install them. Curator 5.4 needs guava, slf4j,
// ZooKeeper (and jute) and, for discovery, jackson; the other jars
// ZooKeeper's manifest names (netty, jetty, ...) serve only its server
// and its optional Netty client, and stay out of the class path.
var curatorJars = []struct{ jar, pkg string }{
	{"curator-framework.jar", "libcurator-framework-java"},
	{"curator-client.jar", "libcurator-client-java"},
	{"curator-recipes.jar", "libcurator-recipes-java"},
	{"curator-x-discovery.jar", "libcurator-discovery-java"},
	{"zookeeper.jar", "libzookeeper-java"},
	{"zookeeper-jute.jar", "libzookeeper-java"},
	{"guava.jar", "libguava-java"},
	{"slf4j-api.jar", "libslf4j-java"},
	{"jackson-databind.jar", "libjackson2-databind-java"},
	{"jackson-core.jar", "libjackson2-core-java"},
	{"jackson-annotations.jar", "libjackson2-annotations-java"},
}

// slf4jBackends are tried in order: slf4j-simple logs warnings to stderr,
// which Driver.Stderr keeps; slf4j-nop silences the libraries.
var slf4jBackends = []string{"slf4j-simple.jar", "slf4j-nop.jar"}

// DefaultPython is the interpreter the Kazoo driver runs with: Debian's,
// for which python3-kazoo installs Kazoo (a python3 earlier on PATH, e.g.
// from pyenv, usually lacks it). $INTEROP_PYTHON overrides it.
const DefaultPython = "/usr/bin/python3"

// curatorClasspath returns the Curator driver's class path, or an error
// naming the missing jars and how to install them.
func curatorClasspath() ([]string, error) {
	var cp, missing []string
	for _, j := range curatorJars {
		p := filepath.Join(javaDir, j.jar)
		if !isFile(p) {
			missing = append(missing, fmt.Sprintf("%s (%s)", p, j.pkg))
			continue
		}
		cp = append(cp, p)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("interop: the Curator driver needs %s; install with `%s`", strings.Join(missing, ", "), InstallHint)
	}
	for _, b := range slf4jBackends {
		if p := filepath.Join(javaDir, b); isFile(p) {
			cp = append(cp, p)
			break
		}
	}
	return cp, nil
}

// jdkTool finds java or javac in $JAVA_HOME/bin, then on PATH.
func jdkTool(name string) (string, error) {
	if home := os.Getenv("JAVA_HOME"); home != "" {
		if p := filepath.Join(home, "bin", name); isFile(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("interop: %s not found ($JAVA_HOME/bin, PATH): install a JDK with `apt-get update && apt-get install -y default-jdk-headless`, and Curator with `%s`", name, InstallHint)
	}
	return p, nil
}

// javaBuild caches the compiled driver for the life of the test process
// (javac takes a second or two). The class files are kept in memory and
// written into each driver's own t.TempDir, so nothing is left on disk.
var javaBuild struct {
	mu      sync.Mutex
	done    bool
	classes map[string][]byte // file name -> class file
	took    time.Duration
	err     error
}

// CompileTime reports how long compiling the Curator driver took (zero
// until a Curator driver was started).
func CompileTime() time.Duration {
	javaBuild.mu.Lock()
	defer javaBuild.mu.Unlock()
	return javaBuild.took
}

// Cleanup drops the compiled Curator driver cached in memory, so the next
// Curator call compiles it again. Calling it is optional: the package
// keeps no files beyond each driver's t.TempDir, which the testing package
// removes. A TestMain may call it after m.Run.
func Cleanup() {
	javaBuild.mu.Lock()
	defer javaBuild.mu.Unlock()
	javaBuild.done, javaBuild.classes, javaBuild.took, javaBuild.err = false, nil, 0, nil
}

func compileDriver(classpath []string) (map[string][]byte, error) {
	javaBuild.mu.Lock()
	defer javaBuild.mu.Unlock()
	if !javaBuild.done {
		began := time.Now()
		javaBuild.classes, javaBuild.err = compile(classpath)
		javaBuild.took = time.Since(began)
		javaBuild.done = true
	}
	return javaBuild.classes, javaBuild.err
}

func compile(classpath []string) (map[string][]byte, error) {
	javac, err := jdkTool("javac")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "interop-javac-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "Driver.java")
	out := filepath.Join(dir, "classes")
	if err := os.WriteFile(src, javaSource, 0o644); err != nil {
		return nil, err
	}
	// -implicit:none and an empty -sourcepath keep javac from compiling
	// sources it finds in jars on the class path.
	cmd := exec.Command(javac, "-nowarn", "-implicit:none", "-sourcepath", "", "-encoding", "UTF-8",
		"-d", out, "-cp", strings.Join(classpath, string(os.PathListSeparator)), src)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("interop: compiling the Curator driver: %v\n%s", err, b)
	}
	files, err := filepath.Glob(filepath.Join(out, "*.class"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("interop: javac produced no class files (%v)", err)
	}
	classes := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		classes[filepath.Base(f)] = b
	}
	return classes, nil
}

// Curator starts the Curator (Java) driver: it compiles java/Driver.java
// once per test process, then runs it in a JVM. t.Cleanup stops it (it
// sends quit, waits, and kills the JVM after 5s). The test is skipped under
// testing.Short and fails when Java or the Curator jars are missing.
func Curator(t testing.TB) *Driver {
	t.Helper()
	if testing.Short() {
		t.Skip("interop: Curator driver skipped in -short mode")
	}
	d, err := startCurator(t)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func startCurator(t testing.TB) (*Driver, error) {
	cp, err := curatorClasspath()
	if err != nil {
		return nil, err
	}
	java, err := jdkTool("java")
	if err != nil {
		return nil, err
	}
	classes, err := compileDriver(cp)
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	for name, b := range classes {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	args := []string{
		"-Xms16m", "-Xmx256m", "-Xss512k",
		"-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
		"-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
		"-cp", strings.Join(append([]string{dir}, cp...), string(os.PathListSeparator)),
		"Driver",
	}
	cmd := exec.Command(java, args...)
	cmd.Dir = dir
	return launch(t, "curator", cmd, "")
}

// Kazoo starts the Kazoo (Python) driver with /usr/bin/python3 (or
// $INTEROP_PYTHON). t.Cleanup stops it (it sends quit, waits, and kills
// the process after 5s). The test is skipped under testing.Short and fails
// when Python or Kazoo are missing.
func Kazoo(t testing.TB) *Driver {
	t.Helper()
	if testing.Short() {
		t.Skip("interop: Kazoo driver skipped in -short mode")
	}
	d, err := startKazoo(t)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func startKazoo(t testing.TB) (*Driver, error) {
	python := os.Getenv("INTEROP_PYTHON")
	if python == "" {
		python = DefaultPython
	}
	if !isFile(python) {
		return nil, fmt.Errorf("interop: %s not found; the Kazoo driver needs Debian's python3 with Kazoo: `%s`", python, InstallHint)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "driver.py")
	if err := os.WriteFile(script, pythonSource, 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(python, "-B", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1")
	return launch(t, "kazoo", cmd, fmt.Sprintf("is Kazoo installed for %s? `%s`", python, InstallHint))
}

// launch starts a driver and registers its cleanup.
func launch(t testing.TB, name string, cmd *exec.Cmd, hint string) (*Driver, error) {
	d, err := start(t, name, cmd)
	if err != nil {
		if hint != "" {
			err = fmt.Errorf("%w\n(%s)", err, hint)
		}
		return nil, err
	}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			if s := d.Stderr(); s != "" {
				t.Logf("interop: %s driver stderr:\n%s", name, s)
			}
		}
	})
	return d, nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
