"""Kazoo driver for the Go interop tests.

Hosts Kazoo clients and obeys a line protocol on stdin/stdout (see
../doc.go). Every request runs on its own thread, so a blocking command
(a lock acquisition) never holds up the command loop. Run it with Debian's
/usr/bin/python3, which has python3-kazoo.
"""

import logging
import os
import struct
import sys
import threading
import time

try:
    import kazoo.version
    from kazoo.client import KazooClient
    from kazoo.exceptions import (BadVersionError, LockTimeout,
                                  NodeExistsError, NoNodeError)
    from kazoo.recipe.counter import Counter
    from kazoo.recipe.lock import Lock
except ImportError as e:  # pragma: no cover
    sys.stderr.write("kazoo driver: cannot import kazoo (%s); install it "
                     "with `apt-get install -y python3-kazoo`\n" % e)
    sys.exit(3)

PROTO = sys.stdout
sys.stdout = sys.stderr  # nothing but the protocol on stdout
OUT_LOCK = threading.Lock()
CLIENTS = {}
CLIENTS_LOCK = threading.Lock()


class Failure(Exception):
    """An error whose message is sent to Go verbatim."""


def send(line):
    with OUT_LOCK:
        PROTO.write(line + "\n")
        PROTO.flush()


def reply(reqid, status, payload):
    payload = payload.replace("\r", " ").replace("\n", " ")
    send("%s %s %s" % (reqid, status, payload) if payload
         else "%s %s" % (reqid, status))


def token(s):
    return "-" if not s else "_".join(s.split())


def event(client, kind, detail):
    send("event %s %s %s %d" % (client, kind, token(detail), time.time_ns()))


def integer(s):
    try:
        return int(s)
    except ValueError:
        raise Failure("not an integer: %s" % s)


class Client(object):
    def __init__(self, name, hosts, session_ms):
        self.name = name
        self.zk = KazooClient(hosts=hosts, timeout=session_ms / 1000.0)
        self.zk.add_listener(self._state)
        self.locks = {}  # path -> held Lock
        self.mu = threading.Lock()

    def _state(self, state):
        event(self.name, "state", str(state))
        return False  # keep listening

    def close(self):
        try:
            self.zk.stop()
        finally:
            self.zk.close()


def client(name):
    with CLIENTS_LOCK:
        c = CLIENTS.get(name)
    if c is None:
        raise Failure("no such client %s" % name)
    return c


def need(cmd, a, n, usage):
    if len(a) < n:
        raise Failure("usage: %s %s" % (cmd, usage))


def cmd_connect(a):
    need("connect", a, 3, "<client> <connectString> <sessionTimeoutMs>")
    c = Client(a[0], a[1], integer(a[2]))
    with CLIENTS_LOCK:
        if a[0] in CLIENTS:
            raise Failure("client %s exists" % a[0])
        CLIENTS[a[0]] = c
    try:
        c.zk.start(timeout=30)
    except Exception:
        with CLIENTS_LOCK:
            CLIENTS.pop(a[0], None)
        c.close()
        raise
    return ""


def cmd_close(a):
    need("close", a, 1, "<client>")
    with CLIENTS_LOCK:
        c = CLIENTS.pop(a[0], None)
    if c is None:
        raise Failure("no such client %s" % a[0])
    c.close()
    return ""


_LOCK_CLASSES = {}


def lock_class(node_name):
    """Lock, or a subclass whose contender nodes use node_name instead of
    Kazoo's "__lock__"."""
    if node_name == Lock._NODE_NAME:
        return Lock
    cls = _LOCK_CLASSES.get(node_name)
    if cls is None:
        cls = type("Lock_" + node_name, (Lock,), {"_NODE_NAME": node_name})
        _LOCK_CLASSES[node_name] = cls
    return cls


def cmd_mutex_acquire(a):
    need("mutex.acquire", a, 3,
         "<client> <path> <timeoutMs> [extra=<p1,p2>] [node=<name>] [id=<s>]")
    c, path, timeout = client(a[0]), a[1], integer(a[2]) / 1000.0
    extra, node, ident = ["-lock-"], Lock._NODE_NAME, ""
    for opt in a[3:]:
        k, _, v = opt.partition("=")
        if k == "extra":
            extra = [p for p in v.split(",") if p]
        elif k == "node":
            node = v
        elif k == "id":
            ident = v
        else:
            raise Failure("unknown option %s" % opt)
    with c.mu:
        if path in c.locks:
            raise Failure("mutex %s already held by %s" % (path, c.name))
    lock = lock_class(node)(c.zk, path, ident, extra_lock_patterns=extra)
    try:
        got = lock.acquire(timeout=timeout)
    except LockTimeout:
        got = False
    at = time.time_ns()
    if not got:
        raise Failure("timeout")
    with c.mu:
        c.locks[path] = lock
    return "%s/%s %d" % (path, lock.node, at)


def cmd_mutex_release(a):
    need("mutex.release", a, 2, "<client> <path>")
    c, path = client(a[0]), a[1]
    with c.mu:
        lock = c.locks.pop(path, None)
    if lock is None:
        raise Failure("mutex %s not held by %s" % (path, c.name))
    at = time.time_ns()
    lock.release()
    return str(at)


def cmd_counter_get(a):
    need("counter.get", a, 2, "<client> <path>")
    c = client(a[0])
    # Catch this client's server up first: the value may have just been
    # written through another server.
    c.zk.sync(a[1])
    return str(Counter(c.zk, a[1], support_curator=True).value)


def cmd_counter_set(a):
    # Kazoo's Counter can only add; set the 4-byte big-endian value it
    # (and Curator's SharedCount) uses with a versioned write instead.
    need("counter.set", a, 3, "<client> <path> <int>")
    c, path, value = client(a[0]), a[1], integer(a[2])
    data = struct.pack(">i", value)
    while True:
        try:
            _, stat = c.zk.get(path)
        except NoNodeError:
            try:
                c.zk.create(path, data, makepath=True)
                return ""
            except NodeExistsError:
                continue
        try:
            c.zk.set(path, data, version=stat.version)
            return ""
        except BadVersionError:
            continue


COMMANDS = {
    "ping": lambda a: "pong",
    "connect": cmd_connect,
    "close": cmd_close,
    "mutex.acquire": cmd_mutex_acquire,
    "mutex.release": cmd_mutex_release,
    "counter.get": cmd_counter_get,
    "counter.set": cmd_counter_set,
}


def run(reqid, cmd, args):
    try:
        fn = COMMANDS.get(cmd)
        if fn is None:
            raise Failure("unknown command %s" % cmd)
        reply(reqid, "ok", fn(args))
    except Failure as e:
        reply(reqid, "err", str(e))
    except Exception as e:
        reply(reqid, "err", "%s: %s" % (type(e).__name__, e))


def shutdown():
    with CLIENTS_LOCK:
        cs = list(CLIENTS.values())
        CLIENTS.clear()
    threads = [threading.Thread(target=c.close, daemon=True) for c in cs]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 3
    for t in threads:
        t.join(max(0, deadline - time.monotonic()))


def main():
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    send("ready kazoo=%s python=%s" % (kazoo.version.__version__,
                                       sys.version.split()[0]))
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        f = line.strip().split(" ")
        if not f[0]:
            continue
        if len(f) < 2:
            reply(f[0], "err", "missing command")
            continue
        if f[1] == "quit":
            shutdown()
            reply(f[0], "ok", "bye")
            os._exit(0)
        threading.Thread(target=run, args=(f[0], f[1], f[2:]),
                         daemon=True).start()
    shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
