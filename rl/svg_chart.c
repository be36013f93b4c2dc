/*
 * svg_chart.c - see svg_chart.h.
 *
 * Layout: a plot area inside fixed margins (left for y tick labels, bottom
 * for x tick labels and the x label, right for the legend). Data map
 * linearly: px = left + (x - x0) / (x1 - x0) * plot_w, py = top + plot_h -
 * (y - y0) / (y1 - y0) * plot_h, where [x0, x1] x [y0, y1] is the data
 * range widened to the outer nice ticks.
 */
#define _GNU_SOURCE
#include "svg_chart.h"

#include <math.h>
#include <stdarg.h>
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

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static void fmt_num(char *buf, size_t n, double v) {
    if (fabs(v) >= 1e5 || (fabs(v) < 1e-3 && v != 0)) snprintf(buf, n, "%.2g", v);
    else snprintf(buf, n, "%.6g", v);
}

char *svg_line_chart(const struct svg_chart_opts *o, const struct svg_series *s, int ns) {
    int W = o->width > 0 ? o->width : 720, H = o->height > 0 ? o->height : 420;
    double left = 70, right = 190, top = 40, bottom = 60;
    double pw = W - left - right, ph = H - top - bottom;
    if (pw < 50) pw = 50;
    if (ph < 50) ph = 50;
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
#define PX(x) (left + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (top + ph - ((y) - y0) / (y1 - y0) * ph)
    struct sbuf b = {0};
    sb_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    sb_printf(&b,
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
              "font-family=\"sans-serif\" font-size=\"12\">\n",
              W, H, W, H);
    sb_printf(&b, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    sb_printf(&b, "<text class=\"title\" x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", left + pw / 2);
    sb_text(&b, o->title);
    sb_printf(&b, "</text>\n");
    /* grid and ticks */
    sb_printf(&b, "<g class=\"yticks\" stroke=\"#ddd\">\n");
    for (int i = 0; i < ny; i++) {
        char lab[32];
        fmt_num(lab, sizeof lab, yt[i]);
        sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left, PY(yt[i]), left + pw, PY(yt[i]));
        sb_printf(&b, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" stroke=\"none\" fill=\"#333\">%s</text>\n",
                  left - 6, PY(yt[i]) + 4, lab);
    }
    sb_printf(&b, "</g>\n<g class=\"xticks\" stroke=\"#ddd\">\n");
    for (int i = 0; i < nx; i++) {
        char lab[32];
        fmt_num(lab, sizeof lab, xt[i]);
        sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", PX(xt[i]), top, PX(xt[i]), top + ph);
        sb_printf(&b, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" stroke=\"none\" fill=\"#333\">%s</text>\n",
                  PX(xt[i]), top + ph + 18, lab);
    }
    sb_printf(&b, "</g>\n");
    /* axes */
    sb_printf(&b, "<g class=\"axes\" stroke=\"#000\" stroke-width=\"1\">");
    sb_printf(&b, "<line class=\"xaxis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left, top + ph, left + pw, top + ph);
    sb_printf(&b, "<line class=\"yaxis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left, top, left, top + ph);
    sb_printf(&b, "</g>\n");
    sb_printf(&b, "<text class=\"xlabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", left + pw / 2, top + ph + 42);
    sb_text(&b, o->xlabel);
    sb_printf(&b, "</text>\n<text class=\"ylabel\" x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">",
              top + ph / 2, top + ph / 2);
    sb_text(&b, o->ylabel);
    sb_printf(&b, "</text>\n");
    /* series: a polyline per run of finite points (NaN = gap) */
    for (int k = 0; k < ns; k++) {
        const char *col = palette[k % 10];
        sb_printf(&b, "<g class=\"series\" data-name=\"");
        sb_text(&b, s[k].name);
        sb_printf(&b, "\" stroke=\"%s\" fill=\"none\" stroke-width=\"2\">\n", col);
        bool open = false;
        for (int i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], y = s[k].y[i];
            if (!isfinite(x) || !isfinite(y)) {
                if (open) sb_printf(&b, "\"/>\n"), open = false;
                continue;
            }
            if (!open) sb_printf(&b, "<polyline points=\""), open = true;
            sb_printf(&b, "%.2f,%.2f ", PX(x), PY(y));
        }
        if (open) sb_printf(&b, "\"/>\n");
        sb_printf(&b, "</g>\n");
    }
    /* legend */
    sb_printf(&b, "<g class=\"legend\">\n");
    for (int k = 0; k < ns; k++) {
        double ly = top + 10 + 20 * k, lx = left + pw + 16;
        sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>", lx, ly,
                  lx + 20, ly, palette[k % 10]);
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">", lx + 26, ly + 4);
        sb_text(&b, s[k].name);
        sb_printf(&b, "</text>\n");
    }
    sb_printf(&b, "</g>\n</svg>\n");
#undef PX
#undef PY
    return b.p;
}
