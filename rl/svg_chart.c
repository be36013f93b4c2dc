/*
 * svg_chart.c - see svg_chart.h.
 *
 * Layout: a plot area inside fixed margins (top for the title and subtitle
 * lines, left for y tick labels, bottom for x tick labels or group names
 * and their n, then the x label, right for the legend). Data map
 * linearly: px = left + (x - x0) / (x1 - x0) * plot_w, py = top + plot_h -
 * (y - y0) / (y1 - y0) * plot_h, where [x0, x1] x [y0, y1] is the data
 * range widened to the outer nice ticks.
 */
#define _GNU_SOURCE
#include "svg_chart.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap <= b->len + (size_t)n) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
}

/* XML text: escape & < > " ' and drop control characters. */
static void sb_text(struct sbuf *b, const char *s) {
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '&') sb_printf(b, "&amp;");
        else if (ch == '<') sb_printf(b, "&lt;");
        else if (ch == '>') sb_printf(b, "&gt;");
        else if (ch == '"') sb_printf(b, "&quot;");
        else if (ch == '\'') sb_printf(b, "&#39;");
        else if (ch < 0x20 && ch != '\t') continue;
        else sb_printf(b, "%c", ch);
    }
}

int svg_nice_ticks(double lo, double hi, int target, double *out, int max) {
    if (!(hi > lo) || !isfinite(lo) || !isfinite(hi) || target < 2) {
        if (max > 0) out[0] = lo;
        return max > 0 ? 1 : 0;
    }
    double raw = (hi - lo) / (target - 1), mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    double step = f <= 1 ? mag : f <= 2 ? 2 * mag : f <= 5 ? 5 * mag : 10 * mag;
    /* from the last tick at or below lo to the first at or above hi */
    double first = floor(lo / step + 1e-9), last = ceil(hi / step - 1e-9);
    int n = 0;
    for (double k = first; k <= last + 0.5 && n < max; k += 1) {
        double t = k * step;
        out[n++] = fabs(t) < step * 1e-9 ? 0.0 : t;
    }
    return n;
}

/* the overall's colour stays out of the palette, so no task is mistaken for it */
#define OVERALL_COLOR "#222222"
static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};
#define NPALETTE ((int)(sizeof palette / sizeof palette[0]))

const char *svg_series_color(const char *name, const char *const *keys, int nkeys) {
    if (!name) name = "";
    if (strcmp(name, "all") == 0) return OVERALL_COLOR;
    bool found = false;
    int rank = 0; /* distinct keys before name, "all" not counted */
    for (int i = 0; i < nkeys; i++) {
        if (!keys[i] || strcmp(keys[i], "all") == 0) continue;
        int c = strcmp(keys[i], name);
        if (c == 0) found = true;
        if (c >= 0) continue;
        bool dup = false;
        for (int j = 0; j < i && !dup; j++) dup = keys[j] && strcmp(keys[j], keys[i]) == 0;
        rank += !dup;
    }
    if (found) return palette[rank % NPALETTE];
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 16777619u;
    return palette[h % NPALETTE];
}

void svg_smooth_centred(const double *y, int n, int window, double *out) {
    int half = window > 1 ? window / 2 : 0;
    for (int i = 0; i < n; i++) {
        out[i] = NAN;
        if (!isfinite(y[i])) continue;
        double sum = 0;
        int k = 0;
        for (int j = i - half; j <= i + half; j++)
            if (j >= 0 && j < n && isfinite(y[j])) sum += y[j], k++;
        out[i] = sum / k;
    }
}

static void fmt_num(char *buf, size_t n, double v) {
    if (fabs(v) >= 1e5 || (fabs(v) < 1e-3 && v != 0)) snprintf(buf, n, "%.2g", v);
    else snprintf(buf, n, "%.6g", v);
}

/* Where the plot area lies on the canvas. */
struct frame {
    int W, H;
    double left, top, pw, ph;
};

static int subtitle_lines(const char *s) {
    if (!s || !*s) return 0;
    int n = 1;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static struct frame frame_for(const struct svg_chart_opts *o, double bottom) {
    int nsub = subtitle_lines(o->subtitle);
    struct frame f = {.W = o->width > 0 ? o->width : 720, .left = 70, .top = 40 + 16 * nsub};
    f.H = o->height > 0 ? o->height : 420 + 16 * nsub;
    double right = 190;
    f.pw = f.W - f.left - right, f.ph = f.H - f.top - bottom;
    if (f.pw < 50) f.pw = 50;
    if (f.ph < 50) f.ph = 50;
    return f;
}

/* The document's head: size, background, title and subtitle lines. */
static void draw_head(struct sbuf *b, const struct frame *f, const struct svg_chart_opts *o) {
    sb_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    sb_printf(b,
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
              "font-family=\"sans-serif\" font-size=\"12\">\n",
              f->W, f->H, f->W, f->H);
    sb_printf(b, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", f->W, f->H);
    sb_printf(b, "<text class=\"title\" x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">",
              f->left + f->pw / 2);
    sb_text(b, o->title);
    sb_printf(b, "</text>\n");
    const char *s = o->subtitle;
    for (int line = 0; s && *s; line++) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        char *part = strndup(s, len);
        if (!part) abort();
        sb_printf(b, "<text class=\"subtitle\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"11\" fill=\"#444\">",
                  f->W / 2.0, 42 + 16 * line);
        sb_text(b, part);
        sb_printf(b, "</text>\n");
        free(part);
        s = e ? e + 1 : NULL;
    }
}

/* Horizontal grid lines with their labels; py maps a value to a pixel row. */
static void draw_yticks(struct sbuf *b, const struct frame *f, const double *yt, int ny, double y0, double y1) {
    sb_printf(b, "<g class=\"yticks\" stroke=\"#ddd\">\n");
    for (int i = 0; i < ny; i++) {
        char lab[32];
        fmt_num(lab, sizeof lab, yt[i]);
        double py = f->top + f->ph - (yt[i] - y0) / (y1 - y0) * f->ph;
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", f->left, py, f->left + f->pw, py);
        sb_printf(b, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" stroke=\"none\" fill=\"#333\">%s</text>\n",
                  f->left - 6, py + 4, lab);
    }
    sb_printf(b, "</g>\n");
}

static void draw_axes(struct sbuf *b, const struct frame *f, const struct svg_chart_opts *o, double xlabel_dy) {
    double bottom = f->top + f->ph;
    sb_printf(b, "<g class=\"axes\" stroke=\"#000\" stroke-width=\"1\">");
    sb_printf(b, "<line class=\"xaxis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", f->left, bottom,
              f->left + f->pw, bottom);
    sb_printf(b, "<line class=\"yaxis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", f->left, f->top, f->left, bottom);
    sb_printf(b, "</g>\n");
    if (o->xlabel && *o->xlabel) {
        sb_printf(b, "<text class=\"xlabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", f->left + f->pw / 2,
                  bottom + xlabel_dy);
        sb_text(b, o->xlabel);
        sb_printf(b, "</text>\n");
    }
    double my = f->top + f->ph / 2;
    sb_printf(b, "<text class=\"ylabel\" x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">", my,
              my);
    sb_text(b, o->ylabel);
    sb_printf(b, "</text>\n");
}

/* The legend: a swatch (a line, or a box for bars) and the name per series. */
static void draw_legend(struct sbuf *b, const struct frame *f, const char *const *names, const char *const *colors, int n,
                        bool boxes) {
    sb_printf(b, "<g class=\"legend\">\n");
    for (int k = 0; k < n; k++) {
        double ly = f->top + 10 + 20 * k, lx = f->left + f->pw + 16;
        if (boxes)
            sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"20\" height=\"10\" fill=\"%s\"/>", lx, ly - 5, colors[k]);
        else
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>", lx, ly,
                      lx + 20, ly, colors[k]);
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\">", lx + 26, ly + 4);
        sb_text(b, names[k]);
        sb_printf(b, "</text>\n");
    }
    sb_printf(b, "</g>\n");
}

/* Each series' colour, from the chart's keys or, without them, its own names. */
static const char **series_colors(const struct svg_chart_opts *o, const char *const *names, int n) {
    const char **c = calloc((size_t)n + 1, sizeof *c);
    if (!c) abort();
    const char *const *keys = o->color_keys ? o->color_keys : names;
    int nkeys = o->color_keys ? o->ncolor_keys : n;
    for (int k = 0; k < n; k++) c[k] = svg_series_color(names[k], keys, nkeys);
    return c;
}

/* One polyline per run of finite points (NaN = gap). */
static void draw_polylines(struct sbuf *b, const char *cls, const double *x, const double *y, int n, double x0, double x1,
                           double y0, double y1, const struct frame *f) {
    bool open = false;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) {
            if (open) sb_printf(b, "\"/>\n"), open = false;
            continue;
        }
        if (!open) sb_printf(b, "<polyline class=\"%s\" points=\"", cls), open = true;
        sb_printf(b, "%.2f,%.2f ", f->left + (x[i] - x0) / (x1 - x0) * f->pw,
                  f->top + f->ph - (y[i] - y0) / (y1 - y0) * f->ph);
    }
    if (open) sb_printf(b, "\"/>\n");
}

char *svg_line_chart(const struct svg_chart_opts *o, const struct svg_series *s, int ns) {
    struct frame f = frame_for(o, 60);
    /* data range */
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], y = s[k].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
        }
    if (!isfinite(xlo)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
    if (o->ymin < o->ymax) ylo = o->ymin, yhi = o->ymax;
    if (xhi <= xlo) xhi = xlo + 1;
    if (yhi <= ylo) ylo -= 0.5, yhi += 0.5;
    double xt[32], yt[32];
    int nx = svg_nice_ticks(xlo, xhi, 6, xt, 32), ny = svg_nice_ticks(ylo, yhi, 6, yt, 32);
    double x0 = fmin(xlo, xt[0]), x1 = fmax(xhi, xt[nx - 1]);
    double y0 = fmin(ylo, yt[0]), y1 = fmax(yhi, yt[ny - 1]);
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    struct sbuf b = {0};
    draw_head(&b, &f, o);
    draw_yticks(&b, &f, yt, ny, y0, y1);
    sb_printf(&b, "<g class=\"xticks\" stroke=\"#ddd\">\n");
    for (int i = 0; i < nx; i++) {
        char lab[32];
        fmt_num(lab, sizeof lab, xt[i]);
        double px = f.left + (xt[i] - x0) / (x1 - x0) * f.pw;
        sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", px, f.top, px, f.top + f.ph);
        sb_printf(&b, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" stroke=\"none\" fill=\"#333\">%s</text>\n",
                  px, f.top + f.ph + 18, lab);
    }
    sb_printf(&b, "</g>\n");
    draw_axes(&b, &f, o, 42);
    const char **names = calloc((size_t)ns + 1, sizeof *names);
    if (!names) abort();
    for (int k = 0; k < ns; k++) names[k] = s[k].name;
    const char **colors = series_colors(o, names, ns);
    /* series: with smoothing, the measured points thin and faint under the
     * smoothed ones bold, so the trend reads through the noise */
    bool smooth = o->smooth > 1;
    for (int k = 0; k < ns; k++) {
        sb_printf(&b, "<g class=\"series\" data-name=\"");
        sb_text(&b, s[k].name);
        sb_printf(&b, "\" stroke=\"%s\" fill=\"none\">\n", colors[k]);
        sb_printf(&b, smooth ? "<g class=\"raw\" stroke-width=\"1\" stroke-opacity=\"0.45\">\n" : "<g class=\"raw\" stroke-width=\"2\">\n");
        draw_polylines(&b, "raw", s[k].x, s[k].y, s[k].n, x0, x1, y0, y1, &f);
        sb_printf(&b, "</g>\n");
        if (smooth && s[k].n > 0) {
            double *sy = malloc((size_t)s[k].n * sizeof *sy);
            if (!sy) abort();
            svg_smooth_centred(s[k].y, s[k].n, o->smooth, sy);
            sb_printf(&b, "<g class=\"smoothed\" data-window=\"%d\" stroke-width=\"2.5\">\n", o->smooth);
            draw_polylines(&b, "smoothed", s[k].x, sy, s[k].n, x0, x1, y0, y1, &f);
            sb_printf(&b, "</g>\n");
            free(sy);
        }
        sb_printf(&b, "</g>\n");
    }
    draw_legend(&b, &f, names, colors, ns, false);
    sb_printf(&b, "</svg>\n");
    free(names);
    free(colors);
    return b.p;
}

char *svg_bar_chart(const struct svg_chart_opts *o, const struct svg_bar_group *g, int ng,
                    const struct svg_bar_series *s, int ns) {
    /* bottom margin: the group's name, its n, then the x label */
    struct frame f = frame_for(o, 74);
    double ylo = 0, yhi = 1;
    if (o->ymin < o->ymax) ylo = o->ymin, yhi = o->ymax;
    else {
        double hi = -INFINITY;
        for (int k = 0; k < ns; k++)
            for (int i = 0; i < ng; i++)
                if (isfinite(s[k].v[i])) hi = fmax(hi, s[k].v[i]), ylo = fmin(ylo, s[k].v[i]);
        if (isfinite(hi) && hi > ylo) yhi = hi;
    }
    double yt[32];
    int ny = svg_nice_ticks(ylo, yhi, 6, yt, 32);
    double y0 = fmin(ylo, yt[0]), y1 = fmax(yhi, yt[ny - 1]);
    if (y1 <= y0) y1 = y0 + 1;
    struct sbuf b = {0};
    draw_head(&b, &f, o);
    draw_yticks(&b, &f, yt, ny, y0, y1);
    /* groups: equal slots along x; the bars fill 80% of a slot, side by side */
    double slot = f.pw / (ng > 0 ? ng : 1), bw = slot * 0.8 / (ns > 0 ? ns : 1);
    sb_printf(&b, "<g class=\"groups\" text-anchor=\"middle\" fill=\"#333\">\n");
    for (int i = 0; i < ng; i++) {
        double cx = f.left + slot * (i + 0.5);
        sb_printf(&b, "<text class=\"group\" x=\"%.1f\" y=\"%.1f\">", cx, f.top + f.ph + 18);
        sb_text(&b, g[i].name);
        sb_printf(&b, "</text>");
        if (g[i].n >= 0)
            sb_printf(&b, "<text class=\"group-n\" x=\"%.1f\" y=\"%.1f\" font-size=\"11\">n=%ld</text>", cx,
                      f.top + f.ph + 33, g[i].n);
        sb_printf(&b, "\n");
    }
    sb_printf(&b, "</g>\n");
    draw_axes(&b, &f, o, 58);
    const char **names = calloc((size_t)ns + 1, sizeof *names);
    if (!names) abort();
    for (int k = 0; k < ns; k++) names[k] = s[k].name;
    const char **colors = series_colors(o, names, ns);
    for (int k = 0; k < ns; k++) {
        sb_printf(&b, "<g class=\"series\" data-name=\"");
        sb_text(&b, s[k].name);
        sb_printf(&b, "\" fill=\"%s\">\n", colors[k]);
        for (int i = 0; i < ng; i++) {
            double v = s[k].v[i];
            if (!isfinite(v)) continue; /* not measured at this stage: no bar, not a zero */
            double vc = fmin(fmax(v, y0), y1);
            double py = f.top + f.ph - (vc - y0) / (y1 - y0) * f.ph, pz = f.top + f.ph - (fmax(0, y0) - y0) / (y1 - y0) * f.ph;
            double x = f.left + slot * i + slot * 0.1 + bw * k;
            char val[32];
            fmt_num(val, sizeof val, v);
            sb_printf(&b, "<rect class=\"bar\" data-group=\"");
            sb_text(&b, g[i].name);
            sb_printf(&b, "\" data-value=\"%s\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"><title>", val, x,
                      fmin(py, pz), bw, fabs(pz - py));
            sb_text(&b, s[k].name);
            sb_printf(&b, ", ");
            sb_text(&b, g[i].name);
            sb_printf(&b, ": %s", val);
            if (s[k].n) sb_printf(&b, " (n=%ld)", s[k].n[i]);
            sb_printf(&b, "</title></rect>\n");
        }
        sb_printf(&b, "</g>\n");
    }
    draw_legend(&b, &f, names, colors, ns, true);
    sb_printf(&b, "</svg>\n");
    free(names);
    free(colors);
    return b.p;
}
