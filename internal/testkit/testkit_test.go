package testkit

import (
	"testing"
	"time"
)

func TestCheckerFindsOverlap(t *testing.T) {
	t0 := time.Now()
	var c Checker
	c.Add("a", t0, t0.Add(2*time.Second))
	c.Add("b", t0.Add(2*time.Second), t0.Add(3*time.Second)) // touching is fine
	if v := c.Violations(1); len(v) != 0 {
		t.Fatalf("touching intervals reported: %v", v)
	}
	c.Add("c", t0.Add(time.Second), t0.Add(1500*time.Millisecond))
	if v := c.Violations(1); len(v) != 1 {
		t.Fatalf("overlap not found exactly once: %v", v)
	}
	if v := c.Violations(2); len(v) != 0 {
		t.Fatalf("two holders reported against a limit of two: %v", v)
	}
}
