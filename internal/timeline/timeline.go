// Package timeline renders a chaos run as one self-contained picture, in the
// spirit of Jepsen's timeline.html: one horizontal lane per client, time on
// the x axis in seconds from the start of the run, every holding (a lock, a
// semaphore lease, a leadership term) as a coloured bar, the session's
// suspended and lost periods as a thin strip under the bars, fault windows as
// shaded vertical bands across all lanes and violations as red outlines drawn
// on top of everything.
//
// The part of a holding that lasted past the moment its client's session was
// suspended or lost is hatched and its length written on it: that is how long
// the step-down took. Every drawn element carries a <title> tooltip naming the
// lane, the kind, the start and end offsets in milliseconds, the duration and
// the label.
//
// Collect data with the Add methods, which are safe for concurrent use, then
// call WriteHTML (a scrollable page that needs no network and no script),
// WriteSVG (a standalone image, narrower by default, for a README) or
// WriteFile. Output is deterministic for the same input: spans, faults and
// violations are sorted before drawing; only the lane order is the order of
// first use.
//
// Long runs stay small: the plot is about 100 px per second of run, capped
// (see Timeline.Width), spans shorter than a pixel are drawn one pixel wide,
// and consecutive spans of one kind on one lane that are less than a pixel
// apart are drawn as a single bar whose tooltip counts them, paler the less
// of its extent they cover.
package timeline // import "github.com/zkrecipes/zkrecipes/internal/timeline"

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Kinds of span. Each kind has its own colour and legend entry. Lock,
// semaphore and term (and any other kind not listed here) are holdings, drawn
// as full-height bars; suspended and lost share a thin strip under the bars;
// registered is a thin strip above them.
const (
	// KindLock is a mutex holding.
	KindLock = "lock"
	// KindSemaphore is a semaphore lease.
	KindSemaphore = "semaphore"
	// KindTerm is a leadership term.
	KindTerm = "term"
	// KindSuspended is a period in which the session was suspended: the
	// connection was lost but the session may still be alive.
	KindSuspended = "suspended"
	// KindLost is a period without a session: from Lost to the next
	// Connected.
	KindLost = "lost"
	// KindRegistered is a period in which the client's registration node
	// was present.
	KindRegistered = "registered"
)

// ErrFormat is returned by WriteFile for a path whose extension is neither
// .html (or .htm) nor .svg.
var ErrFormat = errors.New("timeline: unsupported file extension (want .html or .svg)")

// Default plot widths used when Timeline.Width is zero.
const (
	// PixelsPerSecond is the automatic horizontal scale.
	PixelsPerSecond = 100
	// MinAutoWidth is the smallest automatic plot width, in pixels.
	MinAutoWidth = 600
	// MaxAutoWidthSVG caps the automatic plot width of WriteSVG, so that the
	// image still fits a README page.
	MaxAutoWidthSVG = 1600
	// MaxAutoWidthHTML caps the automatic plot width of WriteHTML, whose plot
	// scrolls horizontally.
	MaxAutoWidthHTML = 30000
)

// Timeline is the data of one run. Fill it with the Add methods (safe for
// concurrent use) or set the fields directly before rendering; do not set
// fields while other goroutines call Add or Write methods. A Timeline must
// not be copied after first use.
type Timeline struct {
	// Title is shown at the top.
	Title string
	// Start and End bound the window drawn. A zero Start (End) is derived
	// from the data: the earliest (latest) non-zero time of any span, fault
	// or violation. Anything outside the window is clipped.
	Start, End time.Time
	// Lanes are drawn top to bottom in this order, one per client.
	Lanes []Lane
	// Faults are drawn as shaded, labelled bands across all lanes.
	Faults []Window
	// Violations are drawn in red on top of everything.
	Violations []Mark
	// Notes are free text lines (a summary) shown under the title.
	Notes []string
	// Width is the width of the plot area in pixels. Zero picks it from the
	// window: PixelsPerSecond, at least MinAutoWidth and at most
	// MaxAutoWidthSVG for WriteSVG or MaxAutoWidthHTML for WriteHTML.
	Width int

	mu    sync.Mutex
	index map[string]int
}

// Lane is one client's row.
type Lane struct {
	// Name labels the lane at the left and in every tooltip.
	Name string
	// Spans are the lane's holdings and session states, in any order.
	Spans []Span
}

// Span is one period of one kind on a lane. A zero Start means "from the
// start of the window"; a zero End means the span was still open when the
// run ended and is drawn to the end of the window.
type Span struct {
	// Kind is one of the Kind constants or any other name (drawn as a
	// holding in a colour of its own).
	Kind string
	// Start and End bound the span.
	Start, End time.Time
	// Label is added to the tooltip.
	Label string
}

// Window is a fault: a shaded band across all lanes. Zero Start and End are
// treated as for Span.
type Window struct {
	// Label is written at the top of the band and in its tooltip.
	Label string
	// Start and End bound the fault.
	Start, End time.Time
	// Target names the client or server the fault hit; it is shown in the
	// tooltip.
	Target string
}

// Mark is a violation, typically the window in which two holdings overlapped.
// Zero Start and End are treated as for Span.
type Mark struct {
	// Lane is the lane the mark is drawn on; "" (or a name that is not a
	// lane) draws it across all lanes.
	Lane string
	// Start and End bound the violation.
	Start, End time.Time
	// Label is written next to the mark and in its tooltip.
	Label string
}

// AddSpan appends s to the lane named lane, creating the lane at the bottom
// on first use. It is safe for concurrent use.
func (t *Timeline) AddSpan(lane string, s Span) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.index[lane]
	if !ok || i >= len(t.Lanes) || t.Lanes[i].Name != lane {
		i = -1
		for j := range t.Lanes {
			if t.Lanes[j].Name == lane {
				i = j
				break
			}
		}
		if i < 0 {
			t.Lanes = append(t.Lanes, Lane{Name: lane})
			i = len(t.Lanes) - 1
		}
		if t.index == nil {
			t.index = make(map[string]int)
		}
		t.index[lane] = i
	}
	t.Lanes[i].Spans = append(t.Lanes[i].Spans, s)
}

// AddFault appends a fault window. It is safe for concurrent use.
func (t *Timeline) AddFault(w Window) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.Faults = append(t.Faults, w)
}

// AddViolation appends a violation. It is safe for concurrent use.
func (t *Timeline) AddViolation(m Mark) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.Violations = append(t.Violations, m)
}

// WriteHTML writes one self-contained HTML5 page: title, notes and legend as
// HTML, the lane labels and the horizontally scrollable plot as inline SVG,
// all styles inline, no external resources and no script. The page is also
// well-formed XML.
func (t *Timeline) WriteHTML(w io.Writer) error {
	m := t.model(MaxAutoWidthHTML)
	bw := bufio.NewWriterSize(w, 64<<10)
	m.writeHTML(bw)
	return bw.Flush()
}

// WriteSVG writes a standalone SVG image (title, notes, legend, labels and
// plot) with its styles inline.
func (t *Timeline) WriteSVG(w io.Writer) error {
	m := t.model(MaxAutoWidthSVG)
	bw := bufio.NewWriterSize(w, 64<<10)
	m.writeSVG(bw)
	return bw.Flush()
}

// WriteFile writes the timeline to path as HTML (.html, .htm) or SVG (.svg),
// chosen by the extension, case-insensitively. Any other extension returns
// an error wrapping ErrFormat and creates no file.
func (t *Timeline) WriteFile(path string) (err error) {
	var write func(io.Writer) error
	switch strings.ToLower(filepath.Ext(path)) {
	case ".html", ".htm":
		write = t.WriteHTML
	case ".svg":
		write = t.WriteSVG
	default:
		return fmt.Errorf("%w: %q", ErrFormat, path)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return write(f)
}

// snapshot copies the data under the lock so that rendering runs without it.
func (t *Timeline) snapshot() (title string, start, end time.Time, lanes []Lane, faults []Window, marks []Mark, notes []string, width int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lanes = make([]Lane, len(t.Lanes))
	for i, l := range t.Lanes {
		lanes[i] = Lane{Name: l.Name, Spans: append([]Span(nil), l.Spans...)}
	}
	return t.Title, t.Start, t.End, lanes,
		append([]Window(nil), t.Faults...),
		append([]Mark(nil), t.Violations...),
		append([]string(nil), t.Notes...),
		t.Width
}
