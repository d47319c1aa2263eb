package interop

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// B64 encodes b for the protocol (standard base64 with padding).
func B64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// ParseNanos parses a protocol timestamp (Unix nanoseconds).
func ParseNanos(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("interop: bad timestamp %q", s)
	}
	return time.Unix(0, n), nil
}

func millis(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// twoFields splits a "<x> <unixNanos>" payload.
func twoFields(payload string) (string, time.Time, error) {
	x, ns, ok := strings.Cut(payload, " ")
	if !ok {
		return "", time.Time{}, fmt.Errorf("interop: malformed payload %q", payload)
	}
	at, err := ParseNanos(ns)
	return x, at, err
}

// Connect opens client and waits until it is connected.
func (d *Driver) Connect(ctx context.Context, client, connectString string, sessionTimeout time.Duration) error {
	_, err := d.Do(ctx, "connect", client, connectString, millis(sessionTimeout))
	return err
}

// CloseClient closes client, releasing everything it holds.
func (d *Driver) CloseClient(ctx context.Context, client string) error {
	_, err := d.Do(ctx, "close", client)
	return err
}

// MutexAcquire acquires the mutex at path for client, waiting at most
// timeout (an error matching ErrTimeout if it could not). It returns the
// lock node's path and when the lock was acquired. opts are Kazoo's
// options ("extra=...", "node=...", "id=...").
func (d *Driver) MutexAcquire(ctx context.Context, client, path string, timeout time.Duration, opts ...string) (node string, at time.Time, err error) {
	p, err := d.Do(ctx, "mutex.acquire", append([]string{client, path, millis(timeout)}, opts...)...)
	if err != nil {
		return "", time.Time{}, err
	}
	return twoFields(p)
}

// MutexRelease releases client's mutex at path and returns the time taken
// just before releasing.
func (d *Driver) MutexRelease(ctx context.Context, client, path string) (time.Time, error) {
	p, err := d.Do(ctx, "mutex.release", client, path)
	if err != nil {
		return time.Time{}, err
	}
	return ParseNanos(p)
}

// RWLockAcquire acquires the read or write side ("read", "write") of the
// Curator read-write lock at path.
func (d *Driver) RWLockAcquire(ctx context.Context, client, path, mode string, timeout time.Duration) (node string, at time.Time, err error) {
	p, err := d.Do(ctx, "rwlock.acquire", client, path, mode, millis(timeout))
	if err != nil {
		return "", time.Time{}, err
	}
	return twoFields(p)
}

// RWLockRelease releases the read or write side of the lock at path.
func (d *Driver) RWLockRelease(ctx context.Context, client, path, mode string) (time.Time, error) {
	p, err := d.Do(ctx, "rwlock.release", client, path, mode)
	if err != nil {
		return time.Time{}, err
	}
	return ParseNanos(p)
}

// SemaphoreAcquire acquires a lease of the Curator InterProcessSemaphoreV2
// at path with maxLeases leases.
func (d *Driver) SemaphoreAcquire(ctx context.Context, client, path string, maxLeases int, timeout time.Duration) (leaseID string, at time.Time, err error) {
	p, err := d.Do(ctx, "semaphore.acquire", client, path, strconv.Itoa(maxLeases), millis(timeout))
	if err != nil {
		return "", time.Time{}, err
	}
	return twoFields(p)
}

// SemaphoreRelease returns a lease.
func (d *Driver) SemaphoreRelease(ctx context.Context, client, leaseID string) (time.Time, error) {
	p, err := d.Do(ctx, "semaphore.release", client, leaseID)
	if err != nil {
		return time.Time{}, err
	}
	return ParseNanos(p)
}

// LatchStart starts client's Curator LeaderLatch at path as participant id.
// Leadership changes arrive as "leader" events.
func (d *Driver) LatchStart(ctx context.Context, client, path, id string) error {
	_, err := d.Do(ctx, "latch.start", client, path, id)
	return err
}

// LatchLeader returns the participant id of the latch's current leader, as
// client's latch sees it ("" if none).
func (d *Driver) LatchLeader(ctx context.Context, client string) (string, error) {
	return d.Do(ctx, "latch.leader", client)
}

// LatchHas reports whether client's latch has leadership.
func (d *Driver) LatchHas(ctx context.Context, client string) (bool, error) {
	p, err := d.Do(ctx, "latch.has", client)
	if err != nil {
		return false, err
	}
	return p == "true", nil
}

// LatchClose closes client's latch, giving up leadership.
func (d *Driver) LatchClose(ctx context.Context, client string) error {
	_, err := d.Do(ctx, "latch.close", client)
	return err
}

// DiscoveryRegister registers a Curator ServiceInstance, given as the JSON
// Curator's JsonInstanceSerializer reads, under basePath. It returns the
// instance's id.
func (d *Driver) DiscoveryRegister(ctx context.Context, client, basePath string, instanceJSON []byte) (string, error) {
	return d.Do(ctx, "discovery.register", client, basePath, B64(instanceJSON))
}

// DiscoveryUnregister unregisters an instance client registered.
func (d *Driver) DiscoveryUnregister(ctx context.Context, client, basePath, service, id string) error {
	_, err := d.Do(ctx, "discovery.unregister", client, basePath, service, id)
	return err
}

// DiscoveryQuery returns the instances of service as a JSON array of the
// objects Curator's JsonInstanceSerializer writes.
func (d *Driver) DiscoveryQuery(ctx context.Context, client, basePath, service string) ([]byte, error) {
	p, err := d.Do(ctx, "discovery.query", client, basePath, service)
	if err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(p)
}

// DiscoveryNames returns the service names under basePath.
func (d *Driver) DiscoveryNames(ctx context.Context, client, basePath string) ([]string, error) {
	p, err := d.Do(ctx, "discovery.names", client, basePath)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, err
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return nil, fmt.Errorf("interop: discovery.names: %w", err)
	}
	return names, nil
}

// CounterGet reads the shared counter at path (Curator SharedCount, Kazoo
// Counter with support_curator).
func (d *Driver) CounterGet(ctx context.Context, client, path string) (int32, error) {
	p, err := d.Do(ctx, "counter.get", client, path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("interop: counter.get: bad value %q", p)
	}
	return int32(n), nil
}

// CounterSet sets the shared counter at path.
func (d *Driver) CounterSet(ctx context.Context, client, path string, v int32) error {
	_, err := d.Do(ctx, "counter.set", client, path, strconv.FormatInt(int64(v), 10))
	return err
}
