/*
 * svg_chart.h - line charts as standalone SVG, drawn by hand (no library):
 * axes with "nice" ticks (1-2-5 steps), tick labels, axis labels, a title,
 * one polyline per series and a legend. The trainer draws reward and
 * accuracy per task against the step with it.
 */
#ifndef VIV_RL_SVG_CHART_H
#define VIV_RL_SVG_CHART_H

#include <stdbool.h>

struct svg_series {
    const char *name;           /* legend text (escaped for XML) */
    const double *x, *y;        /* n points; points with a NaN coordinate are gaps */
    int n;
};

struct svg_chart_opts {
    const char *title, *xlabel, *ylabel;
    int width, height;          /* pixels (0: 720 x 420) */
    double ymin, ymax;          /* fixed y range when ymin < ymax; otherwise fitted to the data */
};

/* The chart as a malloc'd NUL-terminated SVG document (never NULL). */
char *svg_line_chart(const struct svg_chart_opts *o, const struct svg_series *s, int ns);

/* Tick positions for [lo, hi]: a 1-2-5 step giving about `target` ticks.
 * Writes up to max ticks into out, returns the count. */
int svg_nice_ticks(double lo, double hi, int target, double *out, int max);

#endif
