#!/usr/bin/python3
"""check_svg.py FILE NAMES COUNTS - validate a chart from rl/svg_chart.c.

Parses FILE with xml.etree (so it must be well-formed XML) and checks it is
an SVG line chart: size and viewBox, two axes, at least two numeric ticks on
each axis in increasing order, a title, a legend naming exactly NAMES
(comma-separated, in order), one series group per name whose polylines hold
COUNTS points (comma-separated) all inside the canvas. Exit 0 when valid,
else 1 with the reason on stdout.
"""
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"


def fail(why):
    print(why)
    sys.exit(1)


def main():
    path = sys.argv[1]
    names = sys.argv[2].split(",") if sys.argv[2] else []
    counts = [int(c) for c in sys.argv[3].split(",")] if sys.argv[3] else []
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
        pts = []
        for pl in g.findall(NS + "polyline"):
            pts += [tuple(map(float, p.split(","))) for p in pl.get("points").split()]
        if len(pts) != want:
            fail(f"series {g.get('data-name')}: {len(pts)} points, {want} expected")
        for x, y in pts:
            if not (0 <= x <= w and 0 <= y <= h):
                fail(f"point {x},{y} outside the canvas")
    print("valid")


if __name__ == "__main__":
    main()
