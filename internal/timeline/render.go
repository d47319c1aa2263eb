package timeline

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Layout, in pixels.
const (
	pad        = 16.0 // outer margin of the standalone SVG
	laneH      = 36.0 // height of a lane with one kind of holding
	regTop     = 3.0  // registered strip, relative to the lane top
	regH       = 4.0
	bandTop    = 9.0  // holding bars
	bandH      = 16.0 // for one kind; 9 px per kind when a lane has several
	sessGap    = 3.0  // between the holdings and the suspended / lost strip
	sessH      = 5.0
	rowH       = 13.0 // one row of fault labels above the axis
	maxRows    = 3    // rows of fault labels; labels that do not fit are only tooltips
	axisH      = 18.0 // tick labels above (and below) the lanes
	plotL      = 10.0 // plot left margin inside the plot part
	plotR      = 30.0 // plot right margin (room for the last tick label)
	minW       = 1.0  // narrowest bar
	minMarkW   = 3.0  // narrowest violation
	mergeGap   = 1.0  // spans of one kind closer than this (px) are drawn as one bar
	legendRow  = 18.0
	fontSmall  = 10.0
	fontNormal = 11.0
)

// w wraps the output; bufio keeps the first error for Flush to return.
type w struct{ *bufio.Writer }

func (o w) s(parts ...string) {
	for _, p := range parts {
		o.WriteString(p)
	}
}

// esc writes text escaped for XML content and attribute values (also valid
// HTML5); characters that XML forbids become U+FFFD.
func (o w) esc(s string) { _ = xml.EscapeText(o, []byte(s)) }

// title writes a <title> child.
func (o w) title(s string) {
	o.s("<title>")
	o.esc(s)
	o.s("</title>")
}

// rect writes <rect class x y width height> with a tooltip (if tip != "").
func (o w) rect(class string, x, y, wd, h float64, tip string, extra string) {
	o.s(`<rect class="`, class, `" x="`, num(x), `" y="`, num(y), `" width="`, num(wd), `" height="`, num(h), `"`, extra)
	if tip == "" {
		o.s("/>")
		return
	}
	o.s(">")
	o.title(tip)
	o.s("</rect>")
}

// text writes a <text> element.
func (o w) text(class string, x, y float64, anchor, body, tip string) {
	o.s(`<text class="`, class, `" x="`, num(x), `" y="`, num(y), `"`)
	if anchor != "" {
		o.s(` text-anchor="`, anchor, `"`)
	}
	o.s(">")
	if tip != "" {
		o.title(tip)
	}
	o.esc(body)
	o.s("</text>")
}

// layout is the vertical geometry of the chart part (lane labels and plot),
// relative to its top.
type layout struct {
	rows        int     // rows of fault labels used
	faultRow    []int   // row of each fault's label, -1 = none
	lanesTop    float64 // top of the first lane
	tops        []float64
	heights     []float64
	lanesBottom float64
	height      float64 // whole chart part
	labelW      float64 // lane label column
}

func (m *model) layout() layout {
	var l layout
	var ends []float64
	for _, f := range m.faults {
		r := -1
		if f.label != "" {
			x := m.x(f.cs)
			wd := textWidth(truncate(f.label, 40), fontSmall) + 8
			for i, e := range ends {
				if e <= x {
					r = i
					break
				}
			}
			if r < 0 && len(ends) < maxRows {
				ends = append(ends, 0)
				r = len(ends) - 1
			}
			if r >= 0 {
				ends[r] = x + wd
			}
		}
		l.faultRow = append(l.faultRow, r)
	}
	l.rows = len(ends)
	l.lanesTop = float64(l.rows)*rowH + axisH
	y := l.lanesTop
	for _, ln := range m.lanes {
		l.tops = append(l.tops, y)
		h := bandTop + band(len(ln.rows)) + sessGap + sessH + 3
		l.heights = append(l.heights, h)
		y += h
	}
	if len(m.lanes) == 0 {
		y += laneH
	}
	l.lanesBottom = y
	l.height = l.lanesBottom + axisH + 2
	longest := 0
	for _, ln := range m.lanes {
		longest = max(longest, len([]rune(ln.name)))
	}
	l.labelW = math.Min(math.Max(float64(min(longest, 32))*7.2+20, 70), 250)
	return l
}

func (l layout) laneTop(i int) float64 { return l.tops[i] }

// band is the height of the holding bars of a lane with n kinds of holding.
func band(n int) float64 { return max(bandH, 9*float64(n)) }

// css is the style sheet shared by both outputs.
func (m *model) css() string {
	var b strings.Builder
	// both styles a data class and its legend swatch, which gets a class of
	// its own so that counting "violation" elements counts only data.
	both := func(class, body string) {
		b.WriteString(`.tl .` + class + `{` + body + `}.tl .sw-` + class + `{` + body + `}`)
	}
	b.WriteString(`.tl text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;font-size:11px;fill:#1e293b}`)
	b.WriteString(`.tl .title{font-size:17px;font-weight:700;fill:#0f172a}`)
	b.WriteString(`.tl .note{font-size:12px;fill:#334155}`)
	b.WriteString(`.tl .meta{font-size:11px;fill:#64748b}`)
	b.WriteString(`.tl .tick{font-size:10px;fill:#64748b}`)
	b.WriteString(`.tl .grid{stroke:#e2e8f0;stroke-width:1}`)
	b.WriteString(`.tl .axis{stroke:#94a3b8;stroke-width:1}`)
	b.WriteString(`.tl .plot{fill:#ffffff;stroke:#cbd5e1;stroke-width:1}`)
	b.WriteString(`.tl .lane-bg{fill:#f1f5f9}`)
	b.WriteString(`.tl .lane-label{font-size:12px;font-weight:600;fill:#0f172a}`)
	b.WriteString(`.tl .empty{font-size:13px;fill:#94a3b8}`)
	both(`fault`, `fill:`+colorFault+`;fill-opacity:.2;stroke:#64748b;stroke-opacity:.55;stroke-width:1;stroke-dasharray:3 2`)
	b.WriteString(`.tl .fault-label{font-size:10px;fill:#334155}`)
	b.WriteString(`.tl .span{stroke:#ffffff;stroke-width:.4;stroke-opacity:.7}`)
	both(`stepdown`, `fill:url(#tl-hatch);stroke:#0f172a;stroke-width:.6`)
	b.WriteString(`.tl .stepdown-label{font-size:9px;font-weight:700;fill:#ffffff;stroke:#0f172a;stroke-width:2.2px;paint-order:stroke}`)
	both(`violation`, `fill:`+colorViolation+`;fill-opacity:.25;stroke:`+colorViolation+`;stroke-width:2`)
	b.WriteString(`.tl .violation-tick{fill:` + colorViolation + `}`)
	b.WriteString(`.tl .violation-label{font-size:11px;font-weight:700;fill:#b91c1c;stroke:#ffffff;stroke-width:3px;paint-order:stroke}`)
	// Every known kind (the legend swatches need them), then the others.
	for _, k := range knownKinds {
		both(m.class[k.kind], `fill:`+k.color)
	}
	for _, k := range m.kinds {
		if c := m.class[k]; strings.HasPrefix(c, "k-x") {
			both(c, `fill:`+m.color[k])
		}
	}
	return b.String()
}

// defs writes the hatch pattern used by step-downs.
func (o w) defs() {
	o.s(`<defs><pattern id="tl-hatch" width="5" height="5" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">`,
		`<rect width="5" height="5" fill="#0f172a" fill-opacity=".35"/><rect width="2.2" height="5" fill="#ffffff" fill-opacity=".75"/></pattern></defs>`)
}

// ticks picks a 1-2-5 step giving at least ~80 px between ticks.
func (m *model) ticks() (step time.Duration, decimals int) {
	secs := m.dur.Seconds()
	target := secs * 80 / m.width
	s := 0.001
	for _, base := range []float64{0.001, 0.01, 0.1, 1, 10, 100, 1000, 10000} {
		for _, f := range []float64{1, 2, 5} {
			if base*f >= target {
				s = base * f
				goto done
			}
		}
	}
	s = 100000
done:
	decimals = 0
	if s < 1 {
		decimals = int(math.Ceil(-math.Log10(s) - 1e-9))
	}
	return time.Duration(s * float64(time.Second)), decimals
}

// legendItem is one entry of the legend.
type legendItem struct {
	swatch string // CSS class of the swatch; "stepdown" draws a hatched bar
	text   string
	tip    string
}

func (m *model) legend() []legendItem {
	var out []legendItem
	for _, k := range m.kinds {
		out = append(out, legendItem{m.class[k], k + " (" + strconv.Itoa(m.kindCount[k]) + ")", k + ": " + m.descOf[k]})
	}
	if m.nStep > 0 {
		out = append(out, legendItem{"stepdown", "step-down (" + strconv.Itoa(m.nStep) + ")",
			"hatched: the part of a holding after its session was suspended or lost, labelled with its length"})
	}
	out = append(out,
		legendItem{"fault", "fault (" + strconv.Itoa(len(m.faults)) + ")", "fault window: shaded band across all lanes"},
		legendItem{"violation", "violation (" + strconv.Itoa(len(m.marks)) + ")", "violation: red outline, on its lane or across all lanes"})
	return out
}

// meta is the one-line description of the window.
func (m *model) meta() string {
	lanes, spans := len(m.lanes), m.nSpans
	if spans == 0 && len(m.faults) == 0 && len(m.marks) == 0 {
		return "no data"
	}
	return fmt.Sprintf("window %s + %.3f s · %s · %s · %s · %s",
		m.start.UTC().Format("2006-01-02 15:04:05.000 UTC"), m.dur.Seconds(),
		plural(lanes, "lane"), plural(spans, "span"), plural(len(m.faults), "fault"), plural(len(m.marks), "violation"))
}

// writeLabels draws the lane label column with its top-left at (ox, oy).
func (m *model) writeLabels(o w, l layout, ox, oy float64) {
	for i, ln := range m.lanes {
		y := oy + l.laneTop(i)
		if i%2 == 1 {
			o.rect("lane-bg", ox, y, l.labelW, l.heights[i], "", "")
		}
		maxChars := int((l.labelW - 16) / 7.2)
		counts := []string{}
		for _, k := range ln.rows {
			counts = append(counts, strconv.Itoa(len(ln.byKind[k]))+" "+k)
		}
		if len(ln.session) > 0 {
			counts = append(counts, strconv.Itoa(len(ln.session))+" session-state")
		}
		if len(ln.reg) > 0 {
			counts = append(counts, strconv.Itoa(len(ln.reg))+" registered")
		}
		tip := ln.name
		if len(counts) > 0 {
			tip += ": " + strings.Join(counts, ", ") + " spans"
		}
		o.text("lane-label", ox+l.labelW-8, y+l.heights[i]/2+4, "end", truncate(ln.name, maxChars), tip)
	}
}

// writePlot draws axes, faults, lanes and violations; (ox, oy) is the
// top-left of the plot part, whose plot area starts plotL to the right.
func (m *model) writePlot(o w, l layout, ox, oy float64) {
	px := ox + plotL
	top, bottom := oy+l.lanesTop, oy+l.lanesBottom
	o.rect("plot", px, top, m.width, bottom-top, "", "")
	for i := range m.lanes {
		if i%2 == 1 {
			o.rect("lane-bg", px, oy+l.laneTop(i), m.width, l.heights[i], "", "")
		}
	}

	// Grid and ticks, labelled in seconds from the start, above and below.
	step, dec := m.ticks()
	o.s(`<g class="ticks">`)
	for t := time.Duration(0); t <= m.dur; t += step {
		x := px + m.x(m.start.Add(t))
		label := strconv.FormatFloat(t.Seconds(), 'f', dec, 64) + "s"
		o.s(`<line class="grid" x1="`, num(x), `" y1="`, num(top), `" x2="`, num(x), `" y2="`, num(bottom), `"/>`)
		o.s(`<line class="axis" x1="`, num(x), `" y1="`, num(top-3), `" x2="`, num(x), `" y2="`, num(top), `"/>`)
		o.s(`<line class="axis" x1="`, num(x), `" y1="`, num(bottom), `" x2="`, num(x), `" y2="`, num(bottom+3), `"/>`)
		o.text("tick", x, top-6, "middle", label, "")
		o.text("tick", x, bottom+13, "middle", label, "")
	}
	o.s(`</g>`)

	// Fault bands behind the spans, their labels in rows above the axis.
	o.s(`<g class="faults">`)
	for i, f := range m.faults {
		x0, x1 := m.x(f.cs), m.x(f.ce)
		wd := math.Max(x1-x0, minW)
		yTop := top
		if r := l.faultRow[i]; r >= 0 {
			yTop = oy + float64(r)*rowH
		}
		tip := "fault " + f.label
		if f.target != "" {
			tip += " on " + f.target
		}
		tip += ": " + m.interval(f)
		o.rect("fault", px+x0, yTop, wd, bottom-yTop, tip, "")
		if r := l.faultRow[i]; r >= 0 {
			o.text("fault-label", px+x0+3, yTop+10, "", truncate(f.label, 40), tip)
		}
	}
	o.s(`</g>`)

	// Lanes.
	for i, ln := range m.lanes {
		y := oy + l.laneTop(i)
		o.s(`<g class="lane">`)
		m.writeSpans(o, ln.name, ln.reg, px, y+regTop, regH)
		if n := len(ln.rows); n > 0 {
			h := band(n) / float64(n)
			for r, k := range ln.rows {
				m.writeSpans(o, ln.name, ln.byKind[k], px, y+bandTop+float64(r)*h, h)
			}
		}
		m.writeSpans(o, ln.name, ln.session, px, y+bandTop+band(len(ln.rows))+sessGap, sessH)
		for _, sd := range ln.stepdowns {
			r := 0
			for j, k := range ln.rows {
				if k == sd.hold.kind {
					r = j
				}
			}
			h := band(len(ln.rows)) / float64(len(ln.rows))
			ry := y + bandTop + float64(r)*h
			x0, x1 := m.x(sd.cs), m.x(sd.ce)
			wd := math.Max(x1-x0, minW)
			d := fmtMS(sd.hold.e.Sub(sd.since))
			var tip string
			if sd.hold.open {
				tip = fmt.Sprintf("%s still held %s at the end, %s ms after its session was %s at %s ms", ln.name, sd.hold.kind, d, sd.cause, m.ms(sd.since))
			} else {
				tip = fmt.Sprintf("%s step-down: held %s %s ms after its session was %s at %s ms (released at %s ms)", ln.name, sd.hold.kind, d, sd.cause, m.ms(sd.since), m.ms(sd.hold.e))
			}
			o.rect("stepdown", px+x0, ry, wd, h, tip, "")
			if lbl := d + " ms"; textWidth(lbl, 9)+4 <= wd && h >= 8 {
				o.text("stepdown-label", px+x0+wd/2, ry+h/2+3.2, "middle", lbl, tip)
			}
		}
		o.s(`</g>`)
	}
	if len(m.lanes) == 0 {
		o.text("empty", px+m.width/2, top+laneH/2+4, "middle", "no lanes", "")
	}
	o.s(`<line class="axis" x1="`, num(px), `" y1="`, num(top), `" x2="`, num(px+m.width), `" y2="`, num(top), `"/>`)
	o.s(`<line class="axis" x1="`, num(px), `" y1="`, num(bottom), `" x2="`, num(px+m.width), `" y2="`, num(bottom), `"/>`)

	// Violations, on top of everything.
	o.s(`<g class="violations">`)
	for _, v := range m.marks {
		x0, x1 := m.x(v.cs), m.x(v.ce)
		if x1-x0 < minMarkW {
			c := (x0 + x1) / 2
			x0, x1 = math.Max(c-minMarkW/2, 0), math.Min(c+minMarkW/2, m.width)
		}
		y0, y1 := top, bottom
		where := "across all lanes"
		if li, ok := m.laneIndex[v.target]; ok {
			y0 = oy + l.laneTop(li) + 1
			y1 = y0 + l.heights[li] - 2
			where = "on " + v.target
		} else if v.target != "" {
			where = "on " + v.target + " (no such lane, drawn across all)"
		}
		tip := "VIOLATION " + where + ": " + m.interval(v)
		if v.label != "" {
			tip += " — " + v.label
		}
		o.rect("violation", px+x0, y0, x1-x0, y1-y0, tip, "")
		c := px + (x0+x1)/2
		o.s(`<path class="violation-tick" d="M`, num(c-5), ` `, num(top-11), `h10l-5 8z">`)
		o.title(tip)
		o.s(`</path>`)
		if v.label != "" {
			lbl := truncate(v.label, 60)
			if x1+4+textWidth(lbl, fontNormal)*1.12 <= m.width || x0 < m.width/2 { // bold: wider
				o.text("violation-label", px+x1+4, y0+13, "", lbl, tip)
			} else {
				o.text("violation-label", px+x0-4, y0+13, "end", lbl, tip)
			}
		}
	}
	o.s(`</g>`)
}

// writeSpans draws one strip of spans, merging those closer than mergeGap.
func (m *model) writeSpans(o w, lane string, its []item, px, y, h float64) {
	var group []item
	var gx0, gx1 float64
	flush := func() {
		if len(group) == 0 {
			return
		}
		first := group[0]
		cls := "span " + m.class[first.kind]
		var tip, extra string
		if len(group) == 1 {
			tip = lane + " " + first.kind + " " + m.interval(first)
			if first.label != "" {
				tip += " — " + first.label
			}
		} else {
			last := first.e
			for _, g := range group {
				if g.e.After(last) {
					last = g.e
				}
			}
			// Shade by how much of the bar's extent the spans cover, so
			// that a busy stretch does not look like one long holding.
			var covered time.Duration
			cur0, cur1 := group[0].cs, group[0].ce
			for _, g := range group[1:] {
				if g.cs.After(cur1) {
					covered += cur1.Sub(cur0)
					cur0, cur1 = g.cs, g.ce
				} else if g.ce.After(cur1) {
					cur1 = g.ce
				}
			}
			covered += cur1.Sub(cur0)
			frac := 1.0
			if ext := cur1.Sub(group[0].cs); ext > 0 {
				frac = float64(covered) / float64(ext)
			}
			extra = ` data-n="` + strconv.Itoa(len(group)) + `" fill-opacity="` + strconv.FormatFloat(0.3+0.7*frac, 'f', 2, 64) + `"`
			cls += " merged"
			tip = fmt.Sprintf("%s %s ×%d spans closer than a pixel, drawn as one bar: %s→%s ms, held %.0f%% of that time (paler = less)",
				lane, first.kind, len(group), m.ms(first.s), m.ms(last), 100*frac)
			for i, g := range group {
				if i == 5 {
					tip += fmt.Sprintf("\n… and %d more (set Width to zoom)", len(group)-5)
					break
				}
				tip += "\n" + m.interval(g)
				if g.label != "" {
					tip += " — " + g.label
				}
			}
		}
		o.rect(cls, px+gx0, y, gx1-gx0, h, tip, extra)
		group = group[:0]
	}
	for _, it := range its {
		x0, x1 := m.x(it.cs), m.x(it.ce)
		if x1-x0 < minW {
			x1 = x0 + minW
			if x1 > m.width {
				x0, x1 = m.width-minW, m.width
			}
		}
		if len(group) > 0 && group[0].kind == it.kind && x0-gx1 < mergeGap {
			group = append(group, it)
			gx1 = math.Max(gx1, x1)
			continue
		}
		flush()
		group = append(group, it)
		gx0, gx1 = x0, x1
	}
	flush()
}

// writeSVG writes the standalone image.
func (m *model) writeSVG(o0 *bufio.Writer) {
	o := w{o0}
	l := m.layout()
	legend := m.legend()
	totalW := pad + l.labelW + plotL + m.width + plotR + pad

	// Header height: title, notes, meta, legend rows.
	y := pad
	headerLines := 0
	if m.title != "" {
		headerLines++
	}
	y += float64(headerLines)*24 + float64(len(m.notes))*17 + 17
	legendRows := 1
	{
		x := pad
		for _, it := range legend {
			iw := 18 + textWidth(it.text, fontNormal) + 16
			if x+iw > totalW-pad && x > pad {
				legendRows++
				x = pad
			}
			x += iw
		}
	}
	chartTop := y + float64(legendRows)*legendRow + 10
	totalH := chartTop + l.height + pad

	o.s(`<?xml version="1.0" encoding="UTF-8"?>`, "\n")
	o.s(`<svg xmlns="http://www.w3.org/2000/svg" class="tl" width="`, num(totalW), `" height="`, num(totalH),
		`" viewBox="0 0 `, num(totalW), ` `, num(totalH), `" font-family="sans-serif">`, "\n")
	o.title(m.title)
	o.s(`<style>`, m.css(), `</style>`, "\n")
	o.defs()
	o.rect("background", 0, 0, totalW, totalH, "", ` fill="#ffffff"`)
	y = pad
	if m.title != "" {
		o.text("title", pad, y+17, "", m.title, "")
		y += 24
	}
	for _, n := range m.notes {
		o.text("note", pad, y+13, "", n, "")
		y += 17
	}
	o.text("meta", pad, y+13, "", m.meta(), "")
	y += 17
	x := pad
	ly := y + 4
	for _, it := range legend {
		iw := 18 + textWidth(it.text, fontNormal) + 16
		if x+iw > totalW-pad && x > pad {
			x, ly = pad, ly+legendRow
		}
		o.s(`<g class="legend-item">`)
		o.title(it.tip)
		m.swatch(o, it.swatch, x, ly, 14, 12)
		o.text("legend", x+18, ly+10, "", it.text, "")
		o.s(`</g>`)
		x += iw
	}
	o.s("\n")
	m.writeLabels(o, l, pad, chartTop)
	m.writePlot(o, l, pad+l.labelW, chartTop)
	o.s("\n</svg>\n")
}

// swatch draws a legend swatch. Its classes are "swatch sw-<class>", never
// the data class itself, so that a document with no violations has no
// element of class "violation" (and likewise for spans and faults).
func (m *model) swatch(o w, class string, x, y, wd, h float64) {
	switch class {
	case "stepdown":
		o.rect("swatch sw-"+m.class[KindLock], x, y, wd, h, "", "")
		o.rect("swatch sw-stepdown", x, y, wd, h, "", "")
	case "violation":
		o.rect("swatch sw-violation", x+1, y+1, wd-2, h-2, "", "")
	default:
		o.rect("swatch sw-"+class, x, y, wd, h, "", "")
	}
}

// writeHTML writes the page.
func (m *model) writeHTML(o0 *bufio.Writer) {
	o := w{o0}
	l := m.layout()
	o.s("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n")
	o.s(`<meta name="viewport" content="width=device-width, initial-scale=1"/>`, "\n<title>")
	if m.title == "" {
		o.s("timeline")
	} else {
		o.esc(m.title)
	}
	o.s("</title>\n<style>\n")
	o.s(`body{margin:20px;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#0f172a;background:#ffffff}`, "\n")
	o.s(`h1{font-size:20px;margin:0 0 6px}p{margin:2px 0}.note{font-size:13px;color:#334155}.meta{font-size:12px;color:#64748b}`, "\n")
	o.s(`.legend{list-style:none;padding:0;margin:10px 0;display:flex;flex-wrap:wrap;gap:4px 18px;font-size:12px}.legend li{display:flex;align-items:center;gap:6px}`, "\n")
	o.s(`.chart{display:flex;align-items:flex-start;border:1px solid #e2e8f0;border-radius:4px;padding:6px 0}.labels{flex:none}.scroll{overflow-x:auto;flex:1 1 auto}svg{display:block}`, "\n")
	o.s(`.hint{font-size:11px;color:#64748b;margin-top:6px}`, "\n")
	o.s(m.css(), "\n</style>\n</head>\n<body>\n")
	if m.title != "" {
		o.s("<h1>")
		o.esc(m.title)
		o.s("</h1>\n")
	}
	for _, n := range m.notes {
		o.s(`<p class="note">`)
		o.esc(n)
		o.s("</p>\n")
	}
	o.s(`<p class="meta">`)
	o.esc(m.meta())
	o.s("</p>\n<ul class=\"legend\">\n")
	for _, it := range m.legend() {
		o.s(`<li title="`)
		o.esc(it.tip)
		o.s(`"><svg xmlns="http://www.w3.org/2000/svg" class="tl" width="14" height="12">`)
		m.swatch(o, it.swatch, 0, 0, 14, 12)
		o.s(`</svg>`)
		o.esc(it.text)
		o.s("</li>\n")
	}
	o.s("</ul>\n<div class=\"chart\">\n<div class=\"labels\">")
	o.s(`<svg xmlns="http://www.w3.org/2000/svg" class="tl" width="`, num(l.labelW), `" height="`, num(l.height), `">`)
	m.writeLabels(o, l, 0, 0)
	o.s("</svg></div>\n<div class=\"scroll\">")
	pw := plotL + m.width + plotR
	o.s(`<svg xmlns="http://www.w3.org/2000/svg" class="tl" width="`, num(pw), `" height="`, num(l.height), `">`)
	o.defs()
	m.writePlot(o, l, 0, 0)
	o.s("</svg></div>\n</div>\n")
	o.s(`<p class="hint">Hover any bar, band or mark for its lane, kind, start and end (ms from the window start), duration and label.`)
	if pw > 1200 {
		o.s(` Scroll the plot sideways.`)
	}
	o.s("</p>\n</body>\n</html>\n")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
