#!/bin/bash
# A private Docker Engine for caulk's tests, separate from any system one:
# its own data root, exec root, pidfile and socket, no bridge and no iptables
# rules, so starting it changes nothing else on the machine.
#
#   dockerd.sh start   start (or reuse) it; prints the DOCKER_HOST value,
#                      e.g. unix:///run/caulk-test/docker/docker.sock
#   dockerd.sh stop    stop it and wait until it is gone
#   dockerd.sh env     print `export CAULK_TEST_DOCKER_HOST=...` for eval
#
# CAULK_TEST_DOCKER_DIR overrides the base directory (/run/caulk-test/docker).
# Uses Debian's docker.io: /usr/sbin/dockerd and /usr/bin/docker.
set -euo pipefail

base=${CAULK_TEST_DOCKER_DIR:-/run/caulk-test/docker}
sock=$base/docker.sock
pidfile=$base/dockerd.pid
host=unix://$sock

alive() { /usr/bin/docker -H "$host" version >/dev/null 2>&1; }

case ${1:-} in
start)
  if alive; then
    echo "$host"
    exit 0
  fi
  mkdir -p "$base/data" "$base/exec"
  rm -f "$sock"
  # setsid: the daemon must outlive the shell that started it.
  setsid /usr/sbin/dockerd \
    --data-root "$base/data" \
    --exec-root "$base/exec" \
    --pidfile "$pidfile" \
    -H "$host" \
    --bridge=none --iptables=false --ip-masq=false \
    >"$base/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 300); do
    if alive; then
      echo "$host"
      exit 0
    fi
    sleep 0.1
  done
  echo "dockerd did not come up within 30 s; log: $base/dockerd.log" >&2
  tail -n 20 "$base/dockerd.log" >&2 || true
  exit 1
  ;;
stop)
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "dockerd ($pid) did not stop within 30 s" >&2
      exit 1
    fi
  fi
  rm -f "$sock" "$pidfile"
  ;;
env)
  echo "export CAULK_TEST_DOCKER_HOST=$host"
  ;;
*)
  echo "usage: $0 start|stop|env" >&2
  exit 2
  ;;
esac
