package timeline

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var sampleDir = flag.String("timeline.sample", "", "write sample.svg, sample.html and big.html to this directory")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// elem is one parsed element.
type elem struct {
	name    string
	attr    map[string]string
	classes []string
	title   string // text of its <title> child
	text    string // its own character data
	order   int    // document order
}

func (e elem) has(class string) bool {
	for _, c := range e.classes {
		if c == class {
			return true
		}
	}
	return false
}

// parse walks the whole document with a strict XML decoder and returns its
// elements; it fails the test if the document is not well-formed.
func parse(t *testing.T, doc []byte) []elem {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	var out []elem
	var stack []int
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := elem{name: tok.Name.Local, attr: map[string]string{}, order: len(out)}
			for _, a := range tok.Attr {
				e.attr[a.Name.Local] = a.Value
			}
			e.classes = strings.Fields(e.attr["class"])
			out = append(out, e)
			stack = append(stack, len(out)-1)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				continue
			}
			i := stack[len(stack)-1]
			if out[i].name == "title" && len(stack) > 1 {
				p := stack[len(stack)-2]
				out[p].title += string(tok)
			}
			out[i].text += string(tok)
		}
	}
	if len(stack) != 0 {
		t.Fatalf("%d unclosed elements", len(stack))
	}
	return out
}

func render(t *testing.T, tl *Timeline) (svg, html []byte) {
	t.Helper()
	var a, b bytes.Buffer
	if err := tl.WriteSVG(&a); err != nil {
		t.Fatalf("WriteSVG: %v", err)
	}
	if err := tl.WriteHTML(&b); err != nil {
		t.Fatalf("WriteHTML: %v", err)
	}
	return a.Bytes(), b.Bytes()
}

// byClass returns the data elements of a class: legend swatches excluded.
func byClass(es []elem, class string) []elem {
	var out []elem
	for _, e := range es {
		if e.has(class) && !e.has("swatch") {
			out = append(out, e)
		}
	}
	return out
}

// spanCount counts drawn spans, a merged bar counting as its data-n.
func spanCount(t *testing.T, es []elem) int {
	t.Helper()
	n := 0
	for _, e := range byClass(es, "span") {
		if v, ok := e.attr["data-n"]; ok {
			k, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("data-n %q: %v", v, err)
			}
			n += k
		} else {
			n++
		}
	}
	return n
}

// sample is a small run: three clients taking turns on a lock, one
// partitioned (suspended, then lost, stepping down late), a leader's term,
// a semaphore lease, and one overlap flagged as a violation.
func sample() *Timeline {
	tl := &Timeline{Title: "lock under partition (sample)", Notes: []string{
		"3 clients, 1 lock; client c2 partitioned at 4.0 s for 3 s",
		"1 violation: c1 and c3 both held the lock for 120 ms",
	}}
	for i := 0; i < 40; i++ {
		c := []string{"c1", "c2", "c3"}[i%3]
		s := i * 250
		if s >= 4000 && s < 7000 && c == "c2" {
			continue
		}
		tl.AddSpan(c, Span{Kind: KindLock, Start: at(s), End: at(s + 200), Label: "lock #" + strconv.Itoa(i)})
	}
	tl.AddSpan("c2", Span{Kind: KindLock, Start: at(3750), End: at(4600), Label: "held into the partition"})
	tl.AddSpan("c2", Span{Kind: KindSuspended, Start: at(4000), End: at(6000)})
	tl.AddSpan("c2", Span{Kind: KindLost, Start: at(6000), End: at(7300)})
	tl.AddSpan("c3", Span{Kind: KindTerm, Start: at(0), End: at(5200), Label: "term 1"})
	tl.AddSpan("c1", Span{Kind: KindTerm, Start: at(5400), Label: "term 2 (still leader at the end)"})
	tl.AddSpan("c1", Span{Kind: KindSemaphore, Start: at(1200), End: at(2900)})
	for _, c := range []string{"c1", "c2", "c3"} {
		tl.AddSpan(c, Span{Kind: KindRegistered, Start: at(100), End: at(9900)})
	}
	tl.AddFault(Window{Label: "partition c2", Start: at(4000), End: at(7000), Target: "c2"})
	tl.AddFault(Window{Label: "kill zk2", Start: at(8200), End: at(8900), Target: "zk2"})
	tl.AddViolation(Mark{Lane: "c3", Start: at(8300), End: at(8420), Label: "c1 and c3 both hold the lock"})
	tl.AddViolation(Mark{Start: at(9500), End: at(9510), Label: "global"})
	return tl
}

func TestWellFormedAndComplete(t *testing.T) {
	tl := sample()
	wantSpans := 0
	for _, l := range tl.Lanes {
		wantSpans += len(l.Spans)
	}
	svg, html := render(t, tl)
	for name, doc := range map[string][]byte{"svg": svg, "html": html} {
		t.Run(name, func(t *testing.T) {
			es := parse(t, doc)
			if got := spanCount(t, es); got != wantSpans {
				t.Errorf("spans drawn = %d, want %d", got, wantSpans)
			}
			if got := len(byClass(es, "fault")); got != len(tl.Faults) {
				t.Errorf("faults drawn = %d, want %d", got, len(tl.Faults))
			}
			if got := len(byClass(es, "violation")); got != len(tl.Violations) {
				t.Errorf("violations drawn = %d, want %d", got, len(tl.Violations))
			}
			if got := len(byClass(es, "lane-label")); got != len(tl.Lanes) {
				t.Errorf("lane labels = %d, want %d", got, len(tl.Lanes))
			}
			if got := len(byClass(es, "stepdown")); got < 1 {
				t.Errorf("no step-down drawn for c2's lock held into the partition")
			}
			for _, class := range []string{"span", "fault", "violation", "stepdown", "lane-label", "violation-tick"} {
				for _, e := range byClass(es, class) {
					if e.title == "" {
						t.Errorf("%s element %v has no <title>", class, e.attr)
					}
				}
			}
			if name == "svg" && es[0].name != "svg" {
				t.Errorf("root element %q, want svg", es[0].name)
			}
			if name == "html" {
				if !bytes.HasPrefix(doc, []byte("<!DOCTYPE html>")) || es[0].name != "html" {
					t.Errorf("not an HTML5 document: %.40q", doc)
				}
				for _, bad := range []string{"<script", " src=", " href=", "@import", "url(http"} {
					if bytes.Contains(doc, []byte(bad)) {
						t.Errorf("HTML refers to an external resource or script: %q", bad)
					}
				}
			}
		})
	}
}

func TestTooltipContents(t *testing.T) {
	tl := &Timeline{}
	tl.AddSpan("c1", Span{Kind: KindLock, Start: at(1000), End: at(1250), Label: "first"})
	tl.AddSpan("c1", Span{Kind: KindSuspended, Start: at(1100), End: at(1400)})
	tl.AddSpan("c1", Span{Kind: KindLock, Start: at(3000), End: at(3100)}) // sets the window end
	svg, _ := render(t, tl)
	es := parse(t, svg)
	spans := byClass(es, "span")
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	want := "c1 lock 0→250 ms (250 ms) — first"
	if spans[0].title != want {
		t.Errorf("tooltip %q, want %q", spans[0].title, want)
	}
	sd := byClass(es, "stepdown")
	if len(sd) != 1 {
		t.Fatalf("%d step-downs, want 1", len(sd))
	}
	if w := "held lock 150 ms after its session was suspended at 100 ms (released at 250 ms)"; !strings.Contains(sd[0].title, w) {
		t.Errorf("step-down tooltip %q lacks %q", sd[0].title, w)
	}
}

func TestEscaping(t *testing.T) {
	hostile := `<script>alert("x")</script> & ' "q" ]]> ` + "\x00\x1b"
	tl := &Timeline{Title: hostile, Notes: []string{hostile}}
	tl.AddSpan(hostile, Span{Kind: KindLock, Start: at(0), End: at(100), Label: hostile})
	tl.AddSpan(hostile, Span{Kind: hostile, Start: at(200), End: at(300), Label: hostile})
	tl.AddFault(Window{Label: hostile, Target: hostile, Start: at(50), End: at(150)})
	tl.AddViolation(Mark{Lane: hostile, Label: hostile, Start: at(60), End: at(70)})
	svg, html := render(t, tl)
	for name, doc := range map[string][]byte{"svg": svg, "html": html} {
		if bytes.Contains(doc, []byte("<script")) || bytes.Contains(doc, []byte(`"q"`)) {
			t.Errorf("%s: hostile text not escaped", name)
		}
		es := parse(t, doc)
		clean := strings.ReplaceAll(strings.ReplaceAll(hostile, "\x00", "\uFFFD"), "\x1b", "\uFFFD")
		found := false
		for _, e := range es {
			if strings.Contains(e.title, clean) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: the hostile label does not survive a round trip through the tooltips", name)
		}
		if got := spanCount(t, es); got != 2 {
			t.Errorf("%s: %d spans, want 2", name, got)
		}
	}
}

// TestNoViolationNoRed: a clean run has no element of class "violation"
// at all (legend included), so a caller counting them sees zero.
func TestNoViolationNoRed(t *testing.T) {
	tl := sample()
	tl.Violations = nil
	svg, html := render(t, tl)
	for name, doc := range map[string][]byte{"svg": svg, "html": html} {
		for _, e := range parse(t, doc) {
			if e.has("violation") || e.has("span") || e.has("fault") {
				if e.has("swatch") {
					t.Errorf("%s: legend swatch %v carries a data class", name, e.attr)
				}
			}
			if e.has("violation") {
				t.Errorf("%s: element %v of class violation in a run without violations", name, e.attr)
			}
		}
	}
}

func TestEmpty(t *testing.T) {
	for _, tl := range []*Timeline{{}, {Title: "only a title", Notes: []string{"nothing happened"}}, {Start: t0}, {End: t0}} {
		svg, html := render(t, tl)
		for _, doc := range [][]byte{svg, html} {
			es := parse(t, doc)
			if n := len(byClass(es, "span")); n != 0 {
				t.Errorf("%d spans in an empty timeline", n)
			}
			if !bytes.Contains(doc, []byte("no lanes")) {
				t.Errorf("empty timeline does not say so")
			}
		}
	}
}

func TestViolationIsRedAndOnTop(t *testing.T) {
	tl := sample()
	svg, _ := render(t, tl)
	es := parse(t, svg)
	var style string
	for _, e := range es {
		if e.name == "style" {
			style = e.text
		}
	}
	if !strings.Contains(style, ".tl .violation{fill:"+colorViolation) || !strings.Contains(style, "stroke:"+colorViolation+";") {
		t.Errorf("violations are not styled red: %q", style)
	}
	lastSpan := 0
	for _, e := range byClass(es, "span") {
		lastSpan = max(lastSpan, e.order)
	}
	marks := byClass(es, "violation")
	if len(marks) != 2 {
		t.Fatalf("%d violation marks, want 2", len(marks))
	}
	for _, v := range marks {
		if v.order < lastSpan {
			t.Errorf("violation %q drawn before (under) a span", v.title)
		}
		if !strings.HasPrefix(v.title, "VIOLATION") {
			t.Errorf("violation tooltip %q", v.title)
		}
	}
	if !strings.Contains(marks[0].title, "on c3: 8300→8420 ms (120 ms) — c1 and c3 both hold the lock") {
		t.Errorf("lane violation tooltip %q", marks[0].title)
	}
	if !strings.Contains(marks[1].title, "across all lanes") {
		t.Errorf("global violation tooltip %q", marks[1].title)
	}
	if n := len(byClass(es, "violation-label")); n != 2 {
		t.Errorf("%d violation labels, want 2", n)
	}
}

func TestConcurrentAdd(t *testing.T) {
	tl := &Timeline{Title: "race"}
	const G, N = 8, 200
	var wg sync.WaitGroup
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			lane := fmt.Sprintf("c%d", g%4)
			for i := 0; i < N; i++ {
				tl.AddSpan(lane, Span{Kind: KindLock, Start: at(i * 10), End: at(i*10 + 5)})
				if i%50 == 0 {
					tl.AddFault(Window{Label: "f", Start: at(i), End: at(i + 1)})
					tl.AddViolation(Mark{Lane: lane, Start: at(i), End: at(i + 1)})
					if err := tl.WriteSVG(io.Discard); err != nil {
						t.Errorf("WriteSVG: %v", err)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	if len(tl.Lanes) != 4 {
		t.Fatalf("%d lanes, want 4", len(tl.Lanes))
	}
	total := 0
	for _, l := range tl.Lanes {
		total += len(l.Spans)
	}
	if total != G*N || len(tl.Faults) != G*4 || len(tl.Violations) != G*4 {
		t.Fatalf("spans %d faults %d violations %d, want %d %d %d", total, len(tl.Faults), len(tl.Violations), G*N, G*4, G*4)
	}
	tl.Width = 100000 // no merging, so that every span is its own bar
	svg, _ := render(t, tl)
	if got := spanCount(t, parse(t, svg)); got != G*N {
		t.Errorf("drew %d spans, want %d", got, G*N)
	}
}

func TestLaneOrderIsFirstUse(t *testing.T) {
	tl := &Timeline{}
	for _, n := range []string{"zeta", "alpha", "zeta", "mid", "alpha"} {
		tl.AddSpan(n, Span{Kind: KindLock, Start: at(0), End: at(1)})
	}
	var names []string
	for _, l := range tl.Lanes {
		names = append(names, l.Name)
	}
	if got := strings.Join(names, ","); got != "zeta,alpha,mid" {
		t.Errorf("lane order %s, want zeta,alpha,mid", got)
	}
	// Lanes set directly still receive Adds.
	tl.Lanes = append([]Lane{{Name: "first"}}, tl.Lanes...)
	tl.AddSpan("mid", Span{Kind: KindLock})
	if len(tl.Lanes) != 4 || len(tl.Lanes[3].Spans) != 2 {
		t.Errorf("AddSpan after setting Lanes: %+v", tl.Lanes)
	}
}

func TestClipping(t *testing.T) {
	tl := &Timeline{Start: at(1000), End: at(2000), Width: 1000}
	tl.AddSpan("c1", Span{Kind: KindLock, Start: at(0), End: at(500), Label: "before"})
	tl.AddSpan("c1", Span{Kind: KindLock, Start: at(2500), End: at(3000), Label: "after"})
	tl.AddSpan("c1", Span{Kind: KindLock, Start: at(800), End: at(1200), Label: "left"})
	tl.AddSpan("c1", Span{Kind: KindLock, Start: at(1900), End: at(2300), Label: "right"})
	tl.AddSpan("c1", Span{Kind: KindLock, Start: at(1400), End: at(1500), Label: "inside"})
	tl.AddSpan("c2", Span{Kind: KindTerm, Start: at(1600), Label: "open"})
	tl.AddFault(Window{Label: "early", Start: at(100), End: at(200)})
	tl.AddFault(Window{Label: "straddles", Start: at(1950), End: at(2600)})
	tl.AddViolation(Mark{Lane: "c1", Start: at(5000), End: at(5100), Label: "late"})
	svg, _ := render(t, tl)
	es := parse(t, svg)
	var plot elem
	for _, e := range es {
		if e.has("plot") {
			plot = e
		}
	}
	px, _ := strconv.ParseFloat(plot.attr["x"], 64)
	pw, _ := strconv.ParseFloat(plot.attr["width"], 64)
	if pw != 1000 {
		t.Fatalf("plot width %v, want the given 1000", pw)
	}
	got := map[string]elem{}
	for _, e := range byClass(es, "span") {
		got[e.title[strings.LastIndex(e.title, " ")+1:]] = e
		x, _ := strconv.ParseFloat(e.attr["x"], 64)
		w, _ := strconv.ParseFloat(e.attr["width"], 64)
		if x < px-0.05 || x+w > px+pw+0.05 {
			t.Errorf("span %q at [%v,%v] outside the plot [%v,%v]", e.title, x, x+w, px, px+pw)
		}
	}
	for _, l := range []string{"before", "after"} {
		if _, ok := got[l]; ok {
			t.Errorf("span %q outside the window was drawn", l)
		}
	}
	for _, l := range []string{"left", "right"} {
		if e, ok := got[l]; !ok || !strings.Contains(e.title, "[clipped to the window]") {
			t.Errorf("span %q: drawn %v, tooltip %q; want clipped", l, ok, e.title)
		}
	}
	if e := got["inside"]; e.attr["x"] != num(px+400) || e.attr["width"] != "100" {
		t.Errorf("inside span at x=%s width=%s, want x=%s width=100", e.attr["x"], e.attr["width"], num(px+400))
	}
	if e := got["open"]; !strings.Contains(e.title, "still open") || e.attr["width"] != "400" {
		t.Errorf("open span: width %s tooltip %q; want drawn to the window end", e.attr["width"], e.title)
	}
	if f := byClass(es, "fault"); len(f) != 1 || !strings.Contains(f[0].title, "straddles") || !strings.Contains(f[0].title, "[clipped to the window]") {
		t.Errorf("fault bands %+v, want only the clipped \"straddles\"", f)
	}
	if n := len(byClass(es, "violation")); n != 0 {
		t.Errorf("%d violations drawn, want 0 (the only one is after the window)", n)
	}
}

func TestMergeKeepsCount(t *testing.T) {
	tl := &Timeline{Width: 600}
	rng := rand.New(rand.NewSource(1))
	ms := 0
	for i := 0; i < 3000; i++ { // bursts of 100 sub-pixel spans, 400 ms apart
		d := 1 + rng.Intn(5)
		tl.AddSpan("c"+strconv.Itoa(i%3), Span{Kind: KindLock, Start: at(ms), End: at(ms + d)})
		ms += d + rng.Intn(3)
		if i%100 == 99 {
			ms += 400
		}
	}
	svg, _ := render(t, tl)
	es := parse(t, svg)
	bars := len(byClass(es, "span"))
	if got := spanCount(t, es); got != 3000 {
		t.Errorf("merged bars count %d spans, want 3000", got)
	}
	if bars >= 3000 || len(byClass(es, "merged")) == 0 {
		t.Errorf("%d bars for 3000 sub-pixel spans: nothing merged", bars)
	}
	t.Logf("3000 spans over %d ms at 600 px: %d bars", ms, bars)
}

func TestDeterministic(t *testing.T) {
	build := func(reverse bool) *Timeline {
		tl := &Timeline{Title: "d"}
		tl.AddSpan("a", Span{Kind: KindLock})
		tl.AddSpan("b", Span{Kind: KindLock})
		idx := []int{0, 1, 2, 3, 4, 5, 6, 7}
		if reverse {
			for i, j := 0, len(idx)-1; i < j; i, j = i+1, j-1 {
				idx[i], idx[j] = idx[j], idx[i]
			}
		}
		for _, i := range idx {
			tl.AddSpan([]string{"a", "b"}[i%2], Span{Kind: []string{"zz", KindTerm, "aa"}[i%3], Start: at(i * 100), End: at(i*100 + 50), Label: strconv.Itoa(i)})
			tl.AddFault(Window{Label: "f" + strconv.Itoa(i), Start: at(i * 100), End: at(i*100 + 10)})
			tl.AddViolation(Mark{Lane: "a", Start: at(i * 100), End: at(i*100 + 5), Label: strconv.Itoa(i)})
		}
		return tl
	}
	s1, h1 := render(t, build(false))
	s2, h2 := render(t, build(true))
	if !bytes.Equal(s1, s2) || !bytes.Equal(h1, h2) {
		t.Errorf("output depends on the order of Adds")
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	tl := sample()
	for _, name := range []string{"t.svg", "t.html", "T.HTM"} {
		p := filepath.Join(dir, name)
		if err := tl.WriteFile(p); err != nil {
			t.Fatalf("WriteFile(%s): %v", name, err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		parse(t, b)
		isHTML := bytes.HasPrefix(b, []byte("<!DOCTYPE html>"))
		if isHTML != !strings.HasSuffix(name, ".svg") {
			t.Errorf("%s: wrong format chosen", name)
		}
	}
	p := filepath.Join(dir, "t.png")
	if err := tl.WriteFile(p); !errors.Is(err, ErrFormat) {
		t.Errorf("WriteFile(.png) = %v, want ErrFormat", err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WriteFile(.png) created a file: %v", err)
	}
}

// big is a synthetic 10-minute run with 20,000 short holdings.
func big() *Timeline {
	tl := &Timeline{Title: "synthetic 10-minute run, 20,000 spans", Notes: []string{"8 clients contending for one lock; a fault every 20 s"}}
	rng := rand.New(rand.NewSource(7))
	const clients = 8
	for i := 0; i < 20000; i++ { // one every 30 ms, held 5-25 ms
		c := "client-" + strconv.Itoa(rng.Intn(clients))
		d := 5 + rng.Float64()*20
		s := t0.Add(time.Duration(float64(i*30)+rng.Float64()*(29-d)) * time.Millisecond)
		tl.AddSpan(c, Span{Kind: KindLock, Start: s, End: s.Add(time.Duration(d * float64(time.Millisecond))), Label: "seq " + strconv.Itoa(i)})
	}
	for f := 0; f < 30; f++ {
		s := at(f*20000 + 5000)
		c := "client-" + strconv.Itoa(f%clients)
		tl.AddFault(Window{Label: "partition " + c, Target: c, Start: s, End: s.Add(4 * time.Second)})
		tl.AddSpan(c, Span{Kind: KindSuspended, Start: s.Add(200 * time.Millisecond), End: s.Add(3 * time.Second)})
		tl.AddSpan(c, Span{Kind: KindLost, Start: s.Add(3 * time.Second), End: s.Add(4500 * time.Millisecond)})
	}
	tl.AddViolation(Mark{Lane: "client-3", Start: at(300000), End: at(300040), Label: "two holders"})
	tl.End = at(600000)
	return tl
}

func TestLargeRunSize(t *testing.T) {
	tl := big()
	svg, html := render(t, tl)
	for name, doc := range map[string][]byte{"svg": svg, "html": html} {
		es := parse(t, doc)
		bars := len(byClass(es, "span"))
		if got := spanCount(t, es); got != 20060 {
			t.Errorf("%s: %d spans drawn, want 20060", name, got)
		}
		t.Logf("%s: %d bytes (%.2f MB), %d bars for 20060 spans", name, len(doc), float64(len(doc))/1e6, bars)
		if len(doc) > 8<<20 {
			t.Errorf("%s: %d bytes for a 10-minute run", name, len(doc))
		}
	}
}

// TestWriteSample writes every format through WriteFile; to keep the
// pictures and look at them: go test -run TestWriteSample
// -timeline.sample=/tmp/tl ./internal/timeline/
func TestWriteSample(t *testing.T) {
	dir := *sampleDir
	if dir == "" {
		dir = t.TempDir()
	}
	for name, tl := range map[string]*Timeline{"sample.svg": sample(), "sample.html": sample(), "big.html": big(), "big.svg": big()} {
		p := filepath.Join(dir, name)
		if err := tl.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("%s: not written (%v)", p, err)
		}
	}
}
