#!/usr/bin/env bash
# Installs what zkrecipes' tests and demo need and are missing:
#   Java and ZooKeeper (Debian package `zookeeper`), Curator and Kazoo for the
#   interop tests, and staticcheck. Safe to run again: it installs only what
#   is absent. Pass "zk" to install only what the demo needs.
set -euo pipefail

want=${1:-all}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: not root and no sudo; install the packages listed in README.md by hand" >&2
  fi
fi

pkgs=()
command -v java >/dev/null 2>&1 || pkgs+=(default-jre-headless)
[ -f /usr/share/java/zookeeper.jar ] || [ -n "${ZOOKEEPER_HOME:-}" ] || pkgs+=(zookeeper)
if [ "$want" = all ]; then
  [ -f /usr/share/java/curator-recipes.jar ] || pkgs+=(libcurator-recipes-java)
  [ -f /usr/share/java/curator-x-discovery.jar ] || pkgs+=(libcurator-discovery-java)
  /usr/bin/python3 -c 'import kazoo' >/dev/null 2>&1 || pkgs+=(python3-kazoo)
  command -v javac >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
fi

if [ ${#pkgs[@]} -gt 0 ]; then
  echo "install-deps: installing ${pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

if [ "$want" = all ]; then
  gobin=$(go env GOPATH)/bin
  if ! [ -x "$gobin/staticcheck" ]; then
    echo "install-deps: installing staticcheck"
    go install honnef.co/go/tools/cmd/staticcheck@v0.8.2 2>/dev/null || go install honnef.co/go/tools/cmd/staticcheck@latest
  fi
fi
