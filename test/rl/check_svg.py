#!/usr/bin/python3
"""check_svg.py - validate a chart from rl/svg_chart.c. Exit 0 when valid,
else 1 with the reason on stdout.

  check_svg.py FILE NAMES COUNTS [--smoothed] [--caption TEXT]...
      Parses FILE with xml.etree (so it must be well-formed XML) and checks it
      is an SVG line chart: size and viewBox, two axes, at least two numeric
      ticks on each axis in increasing order, a title, a legend naming exactly
      NAMES (comma-separated, in order), one series group per name whose raw
      polylines hold COUNTS points (comma-separated) all inside the canvas.
      --smoothed: each series also has a smoothed polyline of as many points.
      --caption TEXT: the title or a subtitle line contains TEXT.
  check_svg.py --bars FILE GROUPS NS NAMES [--caption TEXT]...
      A grouped bar chart: the group labels are GROUPS (comma-separated, in
      order) with "n=N" under each (NS), one series per name in NAMES (the
      legend, in order), each bar inside the plot and tagged with its group.
  check_svg.py --same-colors FILE1 FILE2
      A series name drawn in both files has the same colour in both, and
      within each file distinct names have distinct colours.
"""
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"


def fail(why):
    print(why)
    sys.exit(1)


def captions(root):
    return [t.text or "" for t in root.iter(NS + "text") if t.get("class") in ("title", "subtitle")]


def check_captions(root, want):
    have = captions(root)
    for text in want:
        if not any(text in c for c in have):
            fail(f"no caption containing {text!r} in {have}")


def series_colors(path):
    root = ET.parse(path).getroot()
    out = {}
    for g in root.iter(NS + "g"):
        if g.get("class") == "series":
            out[g.get("data-name")] = g.get("stroke") or g.get("fill")
    return out


def same_colors(a, b):
    ca, cb = series_colors(a), series_colors(b)
    for c in (ca, cb):
        if len(set(c.values())) != len(c):
            fail(f"two series share a colour: {c}")
    common = sorted(set(ca) & set(cb))
    if not common:
        fail("no series in common")
    for name in common:
        if ca[name] != cb[name]:
            fail(f"{name}: {ca[name]} in one chart, {cb[name]} in the other")
    print("valid")


def bars(path, groups, ns, names, want_captions):
    root = ET.parse(path).getroot()
    if root.tag != NS + "svg":
        fail(f"root is {root.tag}")
    w, h = float(root.get("width")), float(root.get("height"))
    texts = list(root.iter(NS + "text"))
    labels = [t.text for t in texts if t.get("class") == "group"]
    if labels != groups:
        fail(f"group labels {labels} != {groups}")
    nlabels = [t.text for t in texts if t.get("class") == "group-n"]
    if nlabels != [f"n={n}" for n in ns]:
        fail(f"group n {nlabels} != {ns}")
    legend = [g for g in root.iter(NS + "g") if g.get("class") == "legend"]
    if not legend or [t.text for t in legend[0].findall(NS + "text")] != names:
        fail(f"legend differs from {names}")
    series = [g for g in root.iter(NS + "g") if g.get("class") == "series"]
    if [g.get("data-name") for g in series] != names:
        fail(f"series {[g.get('data-name') for g in series]} != {names}")
    for g in series:
        rects = g.findall(NS + "rect")
        if not rects:
            fail(f"series {g.get('data-name')}: no bars")
        for r in rects:
            if r.get("data-group") not in groups:
                fail(f"bar in unknown group {r.get('data-group')}")
            x, y, bw, bh = (float(r.get(k)) for k in ("x", "y", "width", "height"))
            if not (0 <= x and x + bw <= w and 0 <= y and y + bh <= h and bw > 0 and bh >= 0):
                fail(f"bar {x},{y} {bw}x{bh} outside the canvas")
            float(r.get("data-value"))
    check_captions(root, want_captions)
    print("valid")


def main():
    args = sys.argv[1:]
    want_captions = []
    while "--caption" in args:
        i = args.index("--caption")
        want_captions.append(args[i + 1])
        del args[i:i + 2]
    if args[0] == "--same-colors":
        return same_colors(args[1], args[2])
    if args[0] == "--bars":
        split = lambda s: s.split(",") if s else []
        return bars(args[1], split(args[2]), [int(n) for n in split(args[3])], split(args[4]), want_captions)
    smoothed = "--smoothed" in args
    args = [a for a in args if a != "--smoothed"]
    path = args[0]
    names = args[1].split(",") if args[1] else []
    counts = [int(c) for c in args[2].split(",")] if args[2] else []
    root = ET.parse(path).getroot()
    if root.tag != NS + "svg":
        fail(f"root is {root.tag}")
    w, h = float(root.get("width")), float(root.get("height"))
    if root.get("viewBox") != f"0 0 {int(w)} {int(h)}":
        fail("viewBox does not match the size")
    groups = {g.get("class"): g for g in root.iter(NS + "g") if g.get("class") in ("axes", "xticks", "yticks", "legend")}
    for need in ("axes", "xticks", "yticks", "legend"):
        if need not in groups:
            fail(f"no {need} group")
    if len(groups["axes"].findall(NS + "line")) != 2:
        fail("axes must be two lines")
    for axis in ("xticks", "yticks"):
        vals = [float(t.text) for t in groups[axis].findall(NS + "text")]
        if len(vals) < 2 or vals != sorted(vals) or len(set(vals)) != len(vals):
            fail(f"{axis}: {vals}")
    titles = [t for t in root.iter(NS + "text") if t.get("class") == "title"]
    if not titles or not (titles[0].text or "").strip():
        fail("no title")
    legend = [t.text for t in groups["legend"].findall(NS + "text")]
    if legend != names:
        fail(f"legend {legend} != {names}")
    series = [g for g in root.iter(NS + "g") if g.get("class") == "series"]
    if [g.get("data-name") for g in series] != names:
        fail("series names differ from the legend")
    for g, want in zip(series, counts):
        for cls in ("raw", "smoothed") if smoothed else ("raw",):
            pts = []
            for pl in g.iter(NS + "polyline"):
                if pl.get("class") == cls:
                    pts += [tuple(map(float, p.split(","))) for p in pl.get("points").split()]
            if len(pts) != want:
                fail(f"series {g.get('data-name')}: {len(pts)} {cls} points, {want} expected")
            for x, y in pts:
                if not (0 <= x <= w and 0 <= y <= h):
                    fail(f"point {x},{y} outside the canvas")
    if not smoothed and any(pl.get("class") == "smoothed" for pl in root.iter(NS + "polyline")):
        fail("a smoothed series where none was asked for")
    check_captions(root, want_captions)
    print("valid")


if __name__ == "__main__":
    main()
