package zktest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fakeEnv(vars map[string]string, path map[string]string) lookupEnv {
	return lookupEnv{
		getenv: func(k string) string { return vars[k] },
		lookPath: func(name string) (string, error) {
			if p, ok := path[name]; ok {
				return p, nil
			}
			return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
		},
		systemJar: "/nonexistent/zookeeper.jar",
	}
}

func touch(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestZooKeeperNotFoundSaysHowToInstall(t *testing.T) {
	_, _, err := findZooKeeper(fakeEnv(nil, map[string]string{"java": "/usr/bin/java"}))
	if !errors.Is(err, ErrZooKeeperNotFound) {
		t.Fatalf("err = %v, want ErrZooKeeperNotFound", err)
	}
	for _, want := range []string{"apt-get update && apt-get install -y zookeeper", "ZOOKEEPER_HOME"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestJavaNotFoundSaysHowToInstall(t *testing.T) {
	_, err := findJava(fakeEnv(nil, nil))
	if !errors.Is(err, ErrJavaNotFound) || !strings.Contains(err.Error(), "apt-get install -y default-jre-headless") {
		t.Fatalf("err = %v, want ErrJavaNotFound naming default-jre-headless", err)
	}
	dir := t.TempDir()
	touch(t, filepath.Join(dir, "bin", "java"))
	if got, err := findJava(fakeEnv(map[string]string{"JAVA_HOME": dir}, nil)); err != nil || got != filepath.Join(dir, "bin", "java") {
		t.Errorf("with JAVA_HOME: got %q, %v", got, err)
	}
}

func TestZooKeeperHome(t *testing.T) {
	home := t.TempDir()
	touch(t, filepath.Join(home, "zookeeper-3.9.9.jar"))
	touch(t, filepath.Join(home, "lib", "zookeeper-jute-3.9.9.jar"))
	touch(t, filepath.Join(home, "lib", "logback-classic-1.2.10.jar"))
	cp, _, err := findZooKeeper(fakeEnv(map[string]string{"ZOOKEEPER_HOME": home}, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		filepath.Join(home, "zookeeper-3.9.9.jar"),
		filepath.Join(home, "lib", "logback-classic-1.2.10.jar"),
		filepath.Join(home, "lib", "zookeeper-jute-3.9.9.jar"),
	}
	if strings.Join(cp, ":") != strings.Join(want, ":") {
		t.Errorf("classpath = %v, want %v (no extra binding: logback is there)", cp, want)
	}

	// A ZOOKEEPER_HOME without jars is an error, not a silent fallback.
	empty := t.TempDir()
	_, _, err = findZooKeeper(fakeEnv(map[string]string{"ZOOKEEPER_HOME": empty}, nil))
	if !errors.Is(err, ErrZooKeeperNotFound) || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty ZOOKEEPER_HOME: err = %v", err)
	}
}

func TestZkServerShOnPath(t *testing.T) {
	home := t.TempDir()
	touch(t, filepath.Join(home, "bin", "zkServer.sh"))
	touch(t, filepath.Join(home, "lib", "zookeeper-3.7.1.jar"))
	touch(t, filepath.Join(home, "lib", "slf4j-log4j12-1.7.30.jar"))
	cp, src, err := findZooKeeper(fakeEnv(nil, map[string]string{"zkServer.sh": filepath.Join(home, "bin", "zkServer.sh")}))
	if err != nil {
		t.Fatal(err)
	}
	if len(cp) != 2 || !strings.HasSuffix(src, "zkServer.sh") {
		t.Errorf("classpath = %v from %s", cp, src)
	}
}

func TestStartWithBadZooKeeperHome(t *testing.T) {
	t.Setenv("ZOOKEEPER_HOME", t.TempDir())
	e, err := Start(context.Background())
	if err == nil {
		e.Close()
		t.Fatal("Start succeeded without ZooKeeper")
	}
	if !errors.Is(err, ErrZooKeeperNotFound) || !strings.Contains(err.Error(), "apt-get update && apt-get install -y zookeeper") {
		t.Fatalf("err = %v", err)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	for name, opt := range map[string]Option{
		"servers":   WithServers(0),
		"tick":      WithTickTime(0),
		"long tick": WithTickTime(time.Minute),
		"log level": WithLogLevel("loud"),
		"syncLimit": WithSyncLimit(0),
		"long sync": WithSyncLimit(40000),
		"part ms":   WithTickTime(1500 * time.Microsecond),
		"writer":    WithLogWriter(nil),
		"dir":       WithDir(""),
		"lines":     WithFailureLogLines(-1),
	} {
		e, err := Start(context.Background(), opt)
		if err == nil {
			e.Close()
		}
		if !errors.Is(err, ErrInvalidOption) || !strings.HasPrefix(err.Error(), "zktest: invalid option: With") {
			t.Errorf("%s: Start(bad option) = %v, want ErrInvalidOption naming the option", name, err)
		}
	}
}
