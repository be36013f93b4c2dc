/*
 * svg_chart.h - charts as standalone SVG, drawn by hand (no library):
 * axes with "nice" ticks (1-2-5 steps), tick labels, axis labels, a title
 * and subtitle lines, and a legend. Two kinds:
 *
 *   svg_line_chart  one polyline per series against a numeric x (the
 *                   trainer's reward and accuracy per task against the
 *                   step), optionally each drawn thin as measured and bold
 *                   smoothed by a centred moving average
 *   svg_bar_chart   grouped bars over categorical groups (the held-out
 *                   accuracy per task at each stage of a run), each group
 *                   named with its n under it
 *
 * A series' colour is a function of its name and the run's list of names
 * (svg_series_color), so one task has the same colour in every chart of a
 * run, whatever else the chart shows.
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
    const char *subtitle;       /* under the title; '\n' starts another line (NULL: none) */
    int width, height;          /* pixels (0: 720 x 420, more for subtitle lines) */
    double ymin, ymax;          /* fixed y range when ymin < ymax; otherwise fitted to the data */
    int smooth;                 /* line charts: > 1 draws each series thin as given and bold as
                                 * svg_smooth_centred with this window; 0 or 1: as given only */
    const char *const *color_keys; /* the names that must get distinct colours (a run's tasks; */
    int ncolor_keys;               /* NULL: the chart's own series names), see svg_series_color */
};

/* The chart as a malloc'd NUL-terminated SVG document (never NULL). */
char *svg_line_chart(const struct svg_chart_opts *o, const struct svg_series *s, int ns);

/* One group of bars (a stage): its label and the n printed under it. */
struct svg_bar_group {
    const char *name;
    long n;                     /* < 0: not printed */
};

/* One bar per group for one series (a task): v[g] for group g (NaN: no
 * bar), n[g] its episodes for the bar's tooltip (n may be NULL). */
struct svg_bar_series {
    const char *name;
    const double *v;
    const long *n;
};

/* Grouped bars: ng groups along x, in each one bar per series in the
 * order given. A malloc'd NUL-terminated SVG document (never NULL). */
char *svg_bar_chart(const struct svg_chart_opts *o, const struct svg_bar_group *g, int ng,
                    const struct svg_bar_series *s, int ns);

/* The colour of the series named `name` ("#rrggbb", static). "all" (the
 * overall) is near-black; a name among keys takes the palette entry of its
 * rank in the sorted distinct keys, so every chart given the same keys
 * colours a name alike, whichever series it draws and in whatever order
 * (distinct for up to 10 keys); any other name picks by a hash of itself. */
const char *svg_series_color(const char *name, const char *const *keys, int nkeys);

/* Centred moving average: out[i] is the mean of the finite y[j] with
 * |i - j| <= window / 2 (the window shrinks at the ends); NaN where y[i]
 * is not finite (a gap stays a gap). out may not alias y. */
void svg_smooth_centred(const double *y, int n, int window, double *out);

/* Tick positions for [lo, hi]: a 1-2-5 step giving about `target` ticks.
 * Writes up to max ticks into out, returns the count. */
int svg_nice_ticks(double lo, double hi, int target, double *out, int max);

#endif
