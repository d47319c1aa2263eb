// Driver hosts Apache Curator clients for the Go interop tests and obeys a
// line protocol on stdin/stdout. See ../doc.go for the protocol.
//
// Every request runs on its own thread, so a command that blocks (a lock
// acquisition) never holds up the command loop. Curator's InterProcessMutex
// is owned by the thread that acquired it, so each (client, lock path) gets
// one dedicated thread on which all its acquires and releases run.

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderLatchListener;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessReadWriteLock;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.details.JsonInstanceSerializer;

@SuppressWarnings({"rawtypes", "unchecked"})
public final class Driver {
    private static PrintStream proto;
    private static final Object outLock = new Object();
    private static final Map<String, Client> clients = new ConcurrentHashMap<>();
    private static final ExecutorService pool = Executors.newCachedThreadPool(daemons("cmd"));
    private static final ObjectMapper json = new ObjectMapper();
    private static final Method getLockPath;

    static {
        try {
            getLockPath = InterProcessMutex.class.getDeclaredMethod("getLockPath");
            getLockPath.setAccessible(true);
        } catch (NoSuchMethodException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /** A failure whose message is sent to Go verbatim. */
    static final class Failure extends Exception {
        Failure(String msg) {
            super(msg);
        }
    }

    public static void main(String[] argv) throws Exception {
        proto = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
        System.setOut(System.err); // nothing but the protocol on stdout
        String curator = mavenVersion(CuratorFramework.class, "org.apache.curator/curator-framework");
        String zk = org.apache.zookeeper.Version.getFullVersion().split("[ ,-]")[0];
        send("ready curator=" + curator + " zookeeper=" + zk + " java=" + System.getProperty("java.version"));

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            line = line.trim();
            if (line.isEmpty()) {
                continue;
            }
            String[] f = line.split(" ");
            final String id = f[0];
            if (f.length < 2) {
                reply(id, "err", "missing command");
                continue;
            }
            final String cmd = f[1];
            final String[] args = Arrays.copyOfRange(f, 2, f.length);
            if (cmd.equals("quit")) {
                shutdown();
                reply(id, "ok", "bye");
                System.exit(0);
            }
            pool.execute(() -> run(id, cmd, args));
        }
        shutdown(); // stdin closed: the Go side is gone
        System.exit(0);
    }

    private static String mavenVersion(Class<?> c, String artifact) {
        try (java.io.InputStream in = c.getResourceAsStream("/META-INF/maven/" + artifact + "/pom.properties")) {
            if (in == null) {
                return "unknown";
            }
            java.util.Properties p = new java.util.Properties();
            p.load(in);
            return p.getProperty("version", "unknown");
        } catch (java.io.IOException e) {
            return "unknown";
        }
    }

    private static ThreadFactory daemons(String prefix) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, prefix + "-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
    }

    private static void send(String line) {
        synchronized (outLock) {
            proto.print(line);
            proto.print('\n');
            proto.flush();
        }
    }

    private static void reply(String id, String status, String payload) {
        send(payload.isEmpty() ? id + " " + status : id + " " + status + " " + oneLine(payload));
    }

    static void event(String client, String kind, String detail) {
        long at = now();
        send("event " + client + " " + kind + " " + token(detail) + " " + at);
    }

    /** Unix nanoseconds from the realtime clock. */
    static long now() {
        Instant i = Instant.now();
        return i.getEpochSecond() * 1_000_000_000L + i.getNano();
    }

    private static String oneLine(String s) {
        return s.replace('\r', ' ').replace('\n', ' ');
    }

    private static String token(String s) {
        if (s == null || s.isEmpty()) {
            return "-";
        }
        return s.replaceAll("\\s", "_");
    }

    private static String b64(byte[] b) {
        return Base64.getEncoder().encodeToString(b);
    }

    private static byte[] unb64(String s) throws Failure {
        try {
            return Base64.getDecoder().decode(s);
        } catch (IllegalArgumentException e) {
            throw new Failure("bad base64: " + e.getMessage());
        }
    }

    private static void run(String id, String cmd, String[] a) {
        try {
            reply(id, "ok", dispatch(cmd, a));
        } catch (Throwable t) {
            reply(id, "err", describe(t));
        }
    }

    private static String describe(Throwable t) {
        while ((t instanceof ExecutionException || t instanceof InvocationTargetException) && t.getCause() != null) {
            t = t.getCause();
        }
        if (t instanceof Failure) {
            return t.getMessage();
        }
        String msg = t.getMessage();
        return t.getClass().getSimpleName() + (msg == null ? "" : ": " + msg);
    }

    private static void need(String cmd, String[] a, int n, String usage) throws Failure {
        if (a.length < n) {
            throw new Failure("usage: " + cmd + " " + usage);
        }
    }

    private static Client client(String name) throws Failure {
        Client c = clients.get(name);
        if (c == null) {
            throw new Failure("no such client " + name);
        }
        return c;
    }

    private static int integer(String s) throws Failure {
        try {
            return Integer.parseInt(s);
        } catch (NumberFormatException e) {
            throw new Failure("not an integer: " + s);
        }
    }

    private static String dispatch(String cmd, String[] a) throws Exception {
        switch (cmd) {
            case "ping":
                return "pong";
            case "connect": {
                need(cmd, a, 3, "<client> <connectString> <sessionTimeoutMs> [connectionTimeoutMs]");
                int session = integer(a[2]);
                int conn = a.length > 3 ? integer(a[3]) : 15000;
                Client c = new Client(a[0], a[1], session, conn);
                if (clients.putIfAbsent(a[0], c) != null) {
                    throw new Failure("client " + a[0] + " exists");
                }
                try {
                    c.start(Math.max(30000, conn));
                } catch (Exception e) {
                    clients.remove(a[0], c);
                    c.close();
                    throw e;
                }
                return "";
            }
            case "close": {
                need(cmd, a, 1, "<client>");
                Client c = clients.remove(a[0]);
                if (c == null) {
                    throw new Failure("no such client " + a[0]);
                }
                c.close();
                return "";
            }
            case "mutex.acquire": {
                need(cmd, a, 3, "<client> <path> <timeoutMs>");
                return client(a[0]).mutexAcquire(a[1], integer(a[2]));
            }
            case "mutex.release": {
                need(cmd, a, 2, "<client> <path>");
                return client(a[0]).mutexRelease(a[1]);
            }
            case "mutex.participants": {
                need(cmd, a, 2, "<client> <path>");
                return client(a[0]).mutexParticipants(a[1]);
            }
            case "rwlock.acquire": {
                need(cmd, a, 4, "<client> <path> read|write <timeoutMs>");
                return client(a[0]).rwAcquire(a[1], a[2], integer(a[3]));
            }
            case "rwlock.release": {
                need(cmd, a, 3, "<client> <path> read|write");
                return client(a[0]).rwRelease(a[1], a[2]);
            }
            case "semaphore.acquire": {
                need(cmd, a, 4, "<client> <path> <maxLeases> <timeoutMs>");
                return client(a[0]).semAcquire(a[1], integer(a[2]), integer(a[3]));
            }
            case "semaphore.release": {
                need(cmd, a, 2, "<client> <leaseId>");
                return client(a[0]).semRelease(a[1]);
            }
            case "latch.start": {
                need(cmd, a, 3, "<client> <path> <participantId>");
                return client(a[0]).latchStart(a[1], a[2]);
            }
            case "latch.leader": {
                need(cmd, a, 1, "<client>");
                return client(a[0]).latch().getLeader().getId();
            }
            case "latch.has": {
                need(cmd, a, 1, "<client>");
                return Boolean.toString(client(a[0]).latch().hasLeadership());
            }
            case "latch.close": {
                need(cmd, a, 1, "<client>");
                return client(a[0]).latchClose();
            }
            case "discovery.register": {
                need(cmd, a, 3, "<client> <basePath> <base64 JSON ServiceInstance>");
                return client(a[0]).discoveryRegister(a[1], unb64(a[2]));
            }
            case "discovery.unregister": {
                need(cmd, a, 4, "<client> <basePath> <service> <id>");
                return client(a[0]).discoveryUnregister(a[1], a[2], a[3]);
            }
            case "discovery.query": {
                need(cmd, a, 3, "<client> <basePath> <service>");
                return client(a[0]).discoveryQuery(a[1], a[2]);
            }
            case "discovery.names": {
                need(cmd, a, 2, "<client> <basePath>");
                return client(a[0]).discoveryNames(a[1]);
            }
            case "counter.get": {
                need(cmd, a, 2, "<client> <path>");
                return client(a[0]).counterGet(a[1]);
            }
            case "counter.set": {
                need(cmd, a, 3, "<client> <path> <int>");
                return client(a[0]).counterSet(a[1], integer(a[2]));
            }
            default:
                throw new Failure("unknown command " + cmd);
        }
    }

    private static void shutdown() {
        List<Future<?>> fs = new ArrayList<>();
        for (String name : new ArrayList<>(clients.keySet())) {
            Client c = clients.remove(name);
            if (c != null) {
                fs.add(pool.submit(c::close));
            }
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(3);
        for (Future<?> f : fs) {
            try {
                f.get(Math.max(1, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            } catch (Exception ignored) {
                // best effort
            }
        }
    }

    /** A lock object plus the one thread all its operations run on. */
    static final class Owned<L> {
        final L lock;
        final ExecutorService thread;

        Owned(L lock, String name) {
            this.lock = lock;
            this.thread = Executors.newSingleThreadExecutor(daemons(name));
        }

        <T> T call(Callable<T> c) throws Exception {
            Future<T> f = thread.submit(c);
            try {
                return f.get();
            } catch (ExecutionException e) {
                Throwable cause = e.getCause();
                if (cause instanceof Exception) {
                    throw (Exception) cause;
                }
                throw e;
            }
        }
    }

    static final class Client {
        final String name;
        final CuratorFramework cf;
        final Map<String, Owned<InterProcessMutex>> mutexes = new ConcurrentHashMap<>();
        final Map<String, Owned<InterProcessReadWriteLock>> rwlocks = new ConcurrentHashMap<>();
        final Map<String, InterProcessSemaphoreV2> semaphores = new ConcurrentHashMap<>();
        final Map<String, Lease> leases = new ConcurrentHashMap<>();
        final Map<String, ServiceDiscovery<Map>> discoveries = new ConcurrentHashMap<>();
        final JsonInstanceSerializer<Map> serializer = new JsonInstanceSerializer<>(Map.class);
        volatile LeaderLatch latch;

        Client(String name, String connect, int sessionMs, int connMs) {
            this.name = name;
            this.cf = CuratorFrameworkFactory.newClient(connect, sessionMs, connMs,
                    new ExponentialBackoffRetry(100, 10, 1000));
            cf.getConnectionStateListenable().addListener((c, s) -> event(name, "state", s.name()));
        }

        void start(int waitMs) throws Exception {
            cf.start();
            if (!cf.blockUntilConnected(waitMs, TimeUnit.MILLISECONDS)) {
                throw new Failure("not connected after " + waitMs + "ms");
            }
        }

        void close() {
            for (Owned<?> o : mutexes.values()) {
                o.thread.shutdownNow();
            }
            for (Owned<?> o : rwlocks.values()) {
                o.thread.shutdownNow();
            }
            LeaderLatch l = latch;
            if (l != null) {
                try {
                    l.close();
                } catch (Exception ignored) {
                    // closing anyway
                }
            }
            for (ServiceDiscovery<Map> d : discoveries.values()) {
                try {
                    d.close();
                } catch (Exception ignored) {
                    // closing anyway
                }
            }
            cf.close();
        }

        private static String lockPath(InterProcessMutex m) {
            try {
                Object p = getLockPath.invoke(m);
                return p == null ? "-" : p.toString();
            } catch (Exception e) {
                return "-";
            }
        }

        String mutexAcquire(String path, int timeoutMs) throws Exception {
            Owned<InterProcessMutex> o = mutexes.computeIfAbsent(path,
                    p -> new Owned<>(new InterProcessMutex(cf, p), "mutex-" + name));
            return o.call(() -> {
                if (!o.lock.acquire(timeoutMs, TimeUnit.MILLISECONDS)) {
                    throw new Failure("timeout");
                }
                long at = now();
                return lockPath(o.lock) + " " + at;
            });
        }

        String mutexRelease(String path) throws Exception {
            Owned<InterProcessMutex> o = mutexes.get(path);
            if (o == null) {
                throw new Failure("mutex " + path + " not held by " + name);
            }
            return o.call(() -> {
                long at = now();
                o.lock.release();
                return Long.toString(at);
            });
        }

        String mutexParticipants(String path) throws Exception {
            Collection<String> nodes = new InterProcessMutex(cf, path).getParticipantNodes();
            return String.join(" ", nodes);
        }

        private Owned<InterProcessReadWriteLock> rw(String path) {
            return rwlocks.computeIfAbsent(path,
                    p -> new Owned<>(new InterProcessReadWriteLock(cf, p), "rwlock-" + name));
        }

        private static InterProcessMutex mode(InterProcessReadWriteLock l, String mode) throws Failure {
            switch (mode) {
                case "read":
                    return l.readLock();
                case "write":
                    return l.writeLock();
                default:
                    throw new Failure("mode must be read or write, not " + mode);
            }
        }

        String rwAcquire(String path, String mode, int timeoutMs) throws Exception {
            Owned<InterProcessReadWriteLock> o = rw(path);
            InterProcessMutex m = mode(o.lock, mode);
            return o.call(() -> {
                if (!m.acquire(timeoutMs, TimeUnit.MILLISECONDS)) {
                    throw new Failure("timeout");
                }
                long at = now();
                return lockPath(m) + " " + at;
            });
        }

        String rwRelease(String path, String mode) throws Exception {
            Owned<InterProcessReadWriteLock> o = rwlocks.get(path);
            if (o == null) {
                throw new Failure("rwlock " + path + " not held by " + name);
            }
            InterProcessMutex m = mode(o.lock, mode);
            return o.call(() -> {
                long at = now();
                m.release();
                return Long.toString(at);
            });
        }

        String semAcquire(String path, int maxLeases, int timeoutMs) throws Exception {
            InterProcessSemaphoreV2 s = semaphores.computeIfAbsent(path + "#" + maxLeases,
                    k -> new InterProcessSemaphoreV2(cf, path, maxLeases));
            Lease lease = s.acquire(timeoutMs, TimeUnit.MILLISECONDS);
            if (lease == null) {
                throw new Failure("timeout");
            }
            long at = now();
            String id = lease.getNodeName();
            leases.put(id, lease);
            return id + " " + at;
        }

        String semRelease(String leaseId) throws Exception {
            Lease lease = leases.remove(leaseId);
            if (lease == null) {
                throw new Failure("no lease " + leaseId + " held by " + name);
            }
            long at = now();
            lease.close();
            return Long.toString(at);
        }

        synchronized String latchStart(String path, String id) throws Exception {
            if (latch != null) {
                throw new Failure("client " + name + " already has a latch");
            }
            LeaderLatch l = new LeaderLatch(cf, path, id, LeaderLatch.CloseMode.NOTIFY_LEADER);
            l.addListener(new LeaderLatchListener() {
                @Override
                public void isLeader() {
                    event(name, "leader", "true");
                }

                @Override
                public void notLeader() {
                    event(name, "leader", "false");
                }
            });
            l.start();
            latch = l;
            return "";
        }

        LeaderLatch latch() throws Failure {
            LeaderLatch l = latch;
            if (l == null) {
                throw new Failure("client " + name + " has no latch");
            }
            return l;
        }

        synchronized String latchClose() throws Exception {
            LeaderLatch l = latch();
            latch = null;
            l.close();
            return "";
        }

        private ServiceDiscovery<Map> discovery(String basePath) throws Exception {
            ServiceDiscovery<Map> d = discoveries.get(basePath);
            if (d != null) {
                return d;
            }
            synchronized (discoveries) {
                d = discoveries.get(basePath);
                if (d == null) {
                    d = ServiceDiscoveryBuilder.builder(Map.class).client(cf).basePath(basePath)
                            .serializer(serializer).build();
                    d.start();
                    discoveries.put(basePath, d);
                }
                return d;
            }
        }

        String discoveryRegister(String basePath, byte[] instanceJson) throws Exception {
            ServiceInstance<Map> inst = serializer.deserialize(instanceJson);
            discovery(basePath).registerService(inst);
            return inst.getId();
        }

        String discoveryUnregister(String basePath, String service, String id) throws Exception {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("name", service);
            m.put("id", id);
            ServiceInstance<Map> inst = serializer.deserialize(json.writeValueAsBytes(m));
            discovery(basePath).unregisterService(inst);
            return "";
        }

        String discoveryQuery(String basePath, String service) throws Exception {
            ByteArrayOutputStream b = new ByteArrayOutputStream();
            b.write('[');
            boolean first = true;
            for (ServiceInstance<Map> i : discovery(basePath).queryForInstances(service)) {
                if (!first) {
                    b.write(',');
                }
                first = false;
                b.write(serializer.serialize(i));
            }
            b.write(']');
            return b64(b.toByteArray());
        }

        String discoveryNames(String basePath) throws Exception {
            return b64(json.writeValueAsBytes(new ArrayList<>(discovery(basePath).queryForNames())));
        }

        String counterGet(String path) throws Exception {
            SharedCount c = new SharedCount(cf, path, 0);
            try {
                c.start();
                return Integer.toString(c.getCount());
            } finally {
                c.close();
            }
        }

        String counterSet(String path, int value) throws Exception {
            SharedCount c = new SharedCount(cf, path, 0);
            try {
                c.start();
                c.setCount(value);
                return "";
            } finally {
                c.close();
            }
        }
    }
}
