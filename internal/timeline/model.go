package timeline

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// strip says where in a lane a kind is drawn.
type strip int

const (
	stripHolding strip = iota
	stripSession
	stripRegistered
)

// kindStyle is the fixed look of a known kind.
type kindStyle struct {
	kind  string
	color string
	strip strip
	desc  string
}

// knownKinds is the legend order of the known kinds.
var knownKinds = []kindStyle{
	{KindLock, "#2563eb", stripHolding, "mutex held"},
	{KindSemaphore, "#0d9488", stripHolding, "semaphore lease held"},
	{KindTerm, "#7c3aed", stripHolding, "leadership term"},
	{KindRegistered, "#65a30d", stripRegistered, "registration node present (thin strip above)"},
	{KindSuspended, "#f59e0b", stripSession, "session suspended (thin strip below)"},
	{KindLost, "#57534e", stripSession, "session lost / no session (thin strip below)"},
}

// otherColors colour kinds that are not known, in sorted order of name.
var otherColors = []string{"#db2777", "#0891b2", "#ca8a04", "#4b5563", "#16a34a", "#9333ea"}

// Colours of the non-span elements, shared by the SVG and HTML styles.
const (
	colorFault     = "#94a3b8"
	colorViolation = "#dc2626"
)

// item is a normalised span, fault or mark: zero times replaced, and the
// drawn (clipped) interval next to the true one.
type item struct {
	kind, label, target string
	s, e                time.Time // true interval (zero Start/End replaced)
	cs, ce              time.Time // clipped to the window
	open, clipped       bool
	in                  bool // overlaps the window
}

// stepdown is the tail of a holding that lasted past a session state change.
type stepdown struct {
	hold    item
	cause   string    // the session kind (suspended or lost)
	since   time.Time // when the session state began
	cs, ce  time.Time // clipped drawn interval
	clipped bool
}

// laneModel is one lane ready to draw.
type laneModel struct {
	name      string
	rows      []string          // holding kinds on this lane, legend order; one sub-row each
	byKind    map[string][]item // sorted by start
	session   []item            // suspended and lost, sorted by start
	reg       []item            // registered, sorted by start
	stepdowns []stepdown
}

// model is everything the writers need, computed once from a snapshot.
type model struct {
	title  string
	notes  []string
	start  time.Time
	end    time.Time
	dur    time.Duration
	width  float64 // plot width in px
	lanes  []laneModel
	faults []item
	marks  []item // lane in target

	kinds     []string // kinds present, legend order
	kindCount map[string]int
	class     map[string]string // kind -> CSS class
	color     map[string]string // kind -> colour
	stripOf   map[string]strip
	descOf    map[string]string
	nSpans    int // spans drawn (inside the window)
	nStep     int
	laneIndex map[string]int
}

// model builds the render model; maxAuto caps the automatic width.
func (t *Timeline) model(maxAuto int) *model {
	title, start, end, lanes, faults, marks, notes, width := t.snapshot()
	m := &model{
		title:     title,
		notes:     notes,
		kindCount: map[string]int{},
		class:     map[string]string{},
		color:     map[string]string{},
		stripOf:   map[string]strip{},
		descOf:    map[string]string{},
		laneIndex: map[string]int{},
	}

	// The window: given bounds, else the extent of the data.
	var lo, hi time.Time
	see := func(ts ...time.Time) {
		for _, x := range ts {
			if x.IsZero() {
				continue
			}
			if lo.IsZero() || x.Before(lo) {
				lo = x
			}
			if hi.IsZero() || x.After(hi) {
				hi = x
			}
		}
	}
	for _, l := range lanes {
		for _, s := range l.Spans {
			see(s.Start, s.End)
		}
	}
	for _, f := range faults {
		see(f.Start, f.End)
	}
	for _, v := range marks {
		see(v.Start, v.End)
	}
	if !start.IsZero() {
		lo = start
	}
	if !end.IsZero() {
		hi = end
	}
	if lo.IsZero() && !hi.IsZero() {
		lo = hi.Add(-time.Second)
	}
	if !hi.After(lo) {
		hi = lo.Add(time.Second)
	}
	m.start, m.end, m.dur = lo, hi, hi.Sub(lo)

	switch {
	case width > 0:
		m.width = float64(width)
	default:
		w := m.dur.Seconds() * PixelsPerSecond
		m.width = math.Min(math.Max(w, MinAutoWidth), float64(maxAuto))
	}

	// Kinds: known ones in fixed order, others sorted by name.
	present := map[string]bool{}
	for _, l := range lanes {
		for _, s := range l.Spans {
			present[s.Kind] = true
		}
	}
	for _, k := range knownKinds {
		m.color[k.kind], m.stripOf[k.kind], m.descOf[k.kind] = k.color, k.strip, k.desc
		m.class[k.kind] = "k-" + k.kind
		if present[k.kind] {
			m.kinds = append(m.kinds, k.kind)
		}
	}
	var others []string
	for k := range present {
		if _, ok := m.class[k]; !ok {
			others = append(others, k)
		}
	}
	sort.Strings(others)
	for i, k := range others {
		m.class[k] = "k-x" + strconv.Itoa(i)
		m.color[k] = otherColors[i%len(otherColors)]
		m.stripOf[k] = stripHolding
		m.descOf[k] = "holding"
		m.kinds = append(m.kinds, k)
	}

	for li, l := range lanes {
		if _, ok := m.laneIndex[l.Name]; !ok {
			m.laneIndex[l.Name] = li
		}
		lm := laneModel{name: l.Name, byKind: map[string][]item{}}
		for _, s := range l.Spans {
			it, ok := m.norm(s.Start, s.End)
			it.kind, it.label = s.Kind, s.Label
			switch m.stripOf[s.Kind] {
			case stripSession:
				lm.session = append(lm.session, it)
			case stripRegistered:
				lm.reg = append(lm.reg, it)
			default:
				// Holdings outside the window still take part in
				// step-down detection below, so keep them for now.
				lm.byKind[s.Kind] = append(lm.byKind[s.Kind], it)
			}
			if ok {
				m.kindCount[s.Kind]++
				m.nSpans++
			}
		}
		sortItems(lm.session)
		sortItems(lm.reg)
		for _, its := range lm.byKind {
			sortItems(its)
		}
		lm.stepdowns = m.stepdowns(lm)
		m.nStep += len(lm.stepdowns)
		// Drop what is outside the window now; a sub-row per kind left.
		for _, k := range m.kinds {
			if its := visible(lm.byKind[k]); len(its) > 0 {
				lm.byKind[k] = its
				lm.rows = append(lm.rows, k)
			} else {
				delete(lm.byKind, k)
			}
		}
		lm.session, lm.reg = visible(lm.session), visible(lm.reg)
		m.lanes = append(m.lanes, lm)
	}

	for _, f := range faults {
		it, ok := m.norm(f.Start, f.End)
		if !ok {
			continue
		}
		it.label, it.target = f.Label, f.Target
		m.faults = append(m.faults, it)
	}
	sortItems(m.faults)
	for _, v := range marks {
		it, ok := m.norm(v.Start, v.End)
		if !ok {
			continue
		}
		it.label, it.target = v.Label, v.Lane
		m.marks = append(m.marks, it)
	}
	sortItems(m.marks)
	return m
}

// norm replaces zero times, orders the interval and clips it to the window;
// ok is false when nothing of it is inside the window.
func (m *model) norm(s, e time.Time) (it item, ok bool) {
	if s.IsZero() {
		s = m.start
	}
	if e.IsZero() {
		e, it.open = m.end, true
		if e.Before(s) {
			e = s
		}
	}
	if e.Before(s) {
		s, e = e, s
	}
	it.s, it.e = s, e
	if e.Before(m.start) || s.After(m.end) {
		it.cs, it.ce = m.start, m.start
		return it, false
	}
	it.cs, it.ce, it.in = s, e, true
	if s.Before(m.start) {
		it.cs, it.clipped = m.start, true
	}
	if e.After(m.end) {
		it.ce, it.clipped = m.end, true
	}
	return it, true
}

// visible keeps the items that overlap the window.
func visible(its []item) []item {
	out := its[:0]
	for _, it := range its {
		if it.in {
			out = append(out, it)
		}
	}
	return out
}

// stepdowns finds, for every holding of the lane, the first suspended or
// lost period that began while it was held: the holding's tail from then to
// its end is the time the client took to step down.
func (m *model) stepdowns(lm laneModel) []stepdown {
	if len(lm.session) == 0 {
		return nil
	}
	var out []stepdown
	for _, k := range m.kinds {
		for _, h := range lm.byKind[k] {
			i := sort.Search(len(lm.session), func(i int) bool { return !lm.session[i].s.Before(h.s) })
			if i == len(lm.session) || !lm.session[i].s.Before(h.e) {
				continue
			}
			sess := lm.session[i]
			it, ok := m.norm(sess.s, h.e)
			if h.open {
				it, ok = m.norm(sess.s, time.Time{})
			}
			if !ok {
				continue
			}
			out = append(out, stepdown{hold: h, cause: sess.kind, since: sess.s, cs: it.cs, ce: it.ce, clipped: it.clipped})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].since.Before(out[j].since) })
	return out
}

// sortItems orders by start, then end, kind, label and target, so that the
// output does not depend on the order of concurrent Adds.
func sortItems(its []item) {
	sort.SliceStable(its, func(i, j int) bool {
		a, b := its[i], its[j]
		switch {
		case !a.s.Equal(b.s):
			return a.s.Before(b.s)
		case !a.e.Equal(b.e):
			return a.e.Before(b.e)
		case a.kind != b.kind:
			return a.kind < b.kind
		case a.label != b.label:
			return a.label < b.label
		default:
			return a.target < b.target
		}
	})
}

// x maps a time inside the window to a pixel offset from the plot's left.
func (m *model) x(t time.Time) float64 {
	return float64(t.Sub(m.start)) / float64(m.dur) * m.width
}

// ms formats t as milliseconds from the window start.
func (m *model) ms(t time.Time) string { return fmtMS(t.Sub(m.start)) }

// fmtMS formats d in milliseconds with at most one decimal.
func fmtMS(d time.Duration) string {
	v := math.Round(float64(d)/float64(time.Millisecond)*10) / 10
	if v == 0 {
		v = 0 // no "-0"
	}
	if math.Abs(v) >= 100 {
		v = math.Round(v)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// num formats a coordinate with at most one decimal.
func num(f float64) string {
	v := math.Round(f*10) / 10
	if v == 0 {
		v = 0
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// interval is the common tooltip tail: "1200→1450 ms (250 ms)".
func (m *model) interval(it item) string {
	var b strings.Builder
	b.WriteString(m.ms(it.s))
	b.WriteString("→")
	if it.open {
		b.WriteString("end of run (still open, ")
		b.WriteString(fmtMS(it.e.Sub(it.s)))
		b.WriteString(" ms shown)")
	} else {
		b.WriteString(m.ms(it.e))
		b.WriteString(" ms (")
		b.WriteString(fmtMS(it.e.Sub(it.s)))
		b.WriteString(" ms)")
	}
	if it.clipped {
		b.WriteString(" [clipped to the window]")
	}
	return b.String()
}

// textWidth estimates the width of s in px at the given font size.
func textWidth(s string, size float64) float64 {
	return float64(len([]rune(s))) * size * 0.58
}

// truncate shortens s to at most n runes, ending with an ellipsis.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 1 {
		return "…"
	}
	return string(r[:n-1]) + "…"
}
