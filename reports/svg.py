"""Tiny dependency-free inline-SVG charts: a line chart with min/max bands, a scatter and a heatmap.

The output is an <svg> element meant to be inlined in HTML (so no xmlns and no ids that could
collide between charts on one page). Every piece of text goes through esc().
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Callable, Sequence

# Okabe-Ito: told apart by readers with every common colour-vision deficiency (yellow, weakest on white,
# last). Series also differ by dash (lines) or marker shape (scatter), so colour is never the only cue.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
MARKERS = ["circle", "square", "triangle", "diamond"]
DASHES = ["", "6 3", "2 3", "8 3 2 3"]
# Stops of a perceptually ordered (viridis-like) scale for heatmaps, low -> high.
SCALE = [(0x44, 0x01, 0x54), (0x3B, 0x52, 0x8B), (0x21, 0x91, 0x8C), (0x5E, 0xC9, 0x62), (0xFD, 0xE7, 0x25)]
FONT = 'font-family="sans-serif" font-size="11"'
CHAR_W = 7.0  # rough width of one 11px character, to size margins around text


def _text_w(text: object) -> float:
    return len(str(text)) * CHAR_W


def esc(text: object) -> str:
    """Escape text for SVG/HTML content and attribute values."""
    return html.escape(str(text), quote=True)


def _num(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _finite(v: float | None) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not (_finite(lo) and _finite(hi)):
        return [0.0, 1.0]
    if hi - lo < 1e-12:  # a flat series: open a small window around the value
        pad = abs(lo) * 0.05 or 0.05
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, t = [], first
    while t < hi + step * 0.999:
        ticks.append(round(t, 12))
        t += step
    return ticks if len(ticks) >= 2 else [first, first + step]


def _header(width: int, height: int, title: str, subtitle: str, x: int) -> list[str]:
    """The opening of every chart: the <svg> element, its title and the subtitle, written from x."""
    out = [
        f'<svg class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
        f'<text x="{x}" y="18" {FONT} font-weight="bold">{esc(title)}</text>',
    ]
    if subtitle:
        out.append(f'<text x="{x}" y="32" {FONT} fill="#555">{esc(subtitle)}</text>')
    return out


@dataclass
class _Frame:
    """An x/y chart's plot area: margins, size, and the maps from data to pixels."""

    ml: int
    mt: int
    pw: int
    ph: int
    x0: float
    x1: float
    y0: float
    y1: float

    def px(self, x: float) -> float:
        return self.ml + (x - self.x0) / (self.x1 - self.x0) * self.pw

    def py(self, y: float) -> float:
        return self.mt + self.ph - (y - self.y0) / (self.y1 - self.y0) * self.ph


def _xy_frame(
    *,
    title: str,
    subtitle: str,
    x_label: str,
    y_label: str,
    width: int,
    height: int,
    legend: Sequence[str],
    legend_rows: int,
    min_plot_w: int,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    x_format: Callable[[float], str],
    y_format: Callable[[float], str],
) -> tuple[list[str], _Frame]:
    """The frame the line chart and the scatter share: a legend column right of the plot (sized to its longest
    entry), round ticks over the data's ranges, grid, tick labels, border and axis labels. Returns the SVG so far
    and the plot area."""
    mr = int(max(120, 50 + max((_text_w(t) for t in legend), default=0)))
    ml, mt, mb = 56, 44 if subtitle else 30, 44
    width = int(max(width, ml + min_plot_w + mr, _text_w(title) + ml, _text_w(subtitle) + ml))
    height = int(max(height, mt + 16 * legend_rows + mb))  # room for the legend
    xt, yt = nice_ticks(*x_range), nice_ticks(*y_range)
    f = _Frame(ml, mt, width - ml - mr, height - mt - mb, xt[0], xt[-1], yt[0], yt[-1])
    out = _header(width, height, title, subtitle, ml)
    for t in xt:  # grid, ticks and tick labels
        out.append(f'<line x1="{f.px(t):.1f}" y1="{mt}" x2="{f.px(t):.1f}" y2="{mt + f.ph}" stroke="#e5e5e5"/>')
        out.append(
            f'<text x="{f.px(t):.1f}" y="{mt + f.ph + 14}" {FONT} text-anchor="middle">{esc(x_format(t))}</text>'
        )
    for t in yt:
        out.append(f'<line x1="{ml}" y1="{f.py(t):.1f}" x2="{ml + f.pw}" y2="{f.py(t):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{ml - 5}" y="{f.py(t) + 4:.1f}" {FONT} text-anchor="end">{esc(y_format(t))}</text>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{f.pw}" height="{f.ph}" fill="none" stroke="#999"/>')
    out.append(f'<text x="{ml + f.pw / 2:.1f}" y="{height - 6}" {FONT} text-anchor="middle">{esc(x_label)}</text>')
    out.append(
        f'<text x="14" y="{mt + f.ph / 2:.1f}" {FONT} text-anchor="middle" '
        f'transform="rotate(-90 14 {mt + f.ph / 2:.1f})">{esc(y_label)}</text>'
    )
    return out, f


@dataclass
class Series:
    """One line: points (x, y); optional band bounds aligned with points; None y = gap."""

    name: str
    points: Sequence[tuple[float, float | None]]
    lower: Sequence[float | None] | None = None
    upper: Sequence[float | None] | None = None
    color: str | None = None
    dash: str = ""


def line_chart(
    series: Sequence[Series],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    subtitle: str = "",
    width: int = 680,
    height: int = 340,
    y_domain: tuple[float, float] | None = None,
    x_format: Callable[[float], str] = _num,
    y_format: Callable[[float], str] = _num,
    hlines: Sequence[tuple[float, str]] = (),
) -> str:
    """A line chart with markers, optional min/max bands, axes with ticks and a legend; hlines are
    dashed horizontal reference lines (value, legend text), e.g. the keep rule's threshold."""
    xs = [x for s in series for x, y in s.points if _finite(x)]
    ys = [
        v for s in series for v in [y for _, y in s.points] + list(s.lower or []) + list(s.upper or []) if _finite(v)
    ] + [v for v, _ in hlines if _finite(v)]
    # The legend sits right of the plot: widen the chart rather than clip long series names.
    out, f = _xy_frame(
        title=title,
        subtitle=subtitle,
        x_label=x_label,
        y_label=y_label,
        width=width,
        height=height,
        legend=[s.name for s in series],
        legend_rows=len(series) + len(hlines),
        min_plot_w=300,
        x_range=(min(xs, default=0.0), max(xs, default=1.0)),
        y_range=y_domain or (min(ys, default=0.0), max(ys, default=1.0)),
        x_format=x_format,
        y_format=y_format,
    )
    ml, mt, pw, px, py = f.ml, f.mt, f.pw, f.px, f.py
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        out += _band(s, color, px, py) + _line(s, color, px, py, x_format, y_format)
        ly = mt + 8 + i * 16  # legend entry
        out.append(
            f'<line x1="{ml + pw + 12}" y1="{ly}" x2="{ml + pw + 34}" y2="{ly}" '
            f'stroke="{color}" stroke-width="2" stroke-dasharray="{s.dash}"/>'
        )
        out.append(f'<text x="{ml + pw + 40}" y="{ly + 4}" {FONT}>{esc(s.name)}</text>')
    for j, (v, text) in enumerate(hlines):
        if not _finite(v):
            continue
        out.append(
            f'<line x1="{ml}" y1="{py(v):.1f}" x2="{ml + pw}" y2="{py(v):.1f}" stroke="#444" '
            f'stroke-width="1.2" stroke-dasharray="4 4"><title>{esc(text)}: {esc(y_format(v))}</title></line>'
        )
        ly = mt + 8 + (len(series) + j) * 16
        out.append(
            f'<line x1="{ml + pw + 12}" y1="{ly}" x2="{ml + pw + 34}" y2="{ly}" stroke="#444" '
            'stroke-width="1.2" stroke-dasharray="4 4"/>'
        )
        out.append(f'<text x="{ml + pw + 40}" y="{ly + 4}" {FONT}>{esc(text)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _band(s: Series, color: str, px: Callable, py: Callable) -> list[str]:
    if s.lower is None or s.upper is None:
        return []
    pts = [
        (x, lo, hi) for (x, _), lo, hi in zip(s.points, s.lower, s.upper) if _finite(x) and _finite(lo) and _finite(hi)
    ]
    if len(pts) < 2:
        return []
    ring = [(px(x), py(hi)) for x, _, hi in pts] + [(px(x), py(lo)) for x, lo, _ in reversed(pts)]
    coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in ring)
    return [f'<polygon points="{coords}" fill="{color}" fill-opacity="0.15" stroke="none"/>']


def _line(s: Series, color: str, px: Callable, py: Callable, x_format: Callable, y_format: Callable) -> list[str]:
    out, run = [], []
    for x, y in list(s.points) + [(None, None)]:  # sentinel flushes the last segment
        if _finite(x) and _finite(y):
            run.append((px(x), py(y)))
            out.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}">'
                f"<title>{esc(s.name)}: {esc(x_format(x))}, {esc(y_format(y))}</title>"
                "</circle>"
            )
        elif run:
            if len(run) > 1:
                coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in run)
                out.insert(
                    0,
                    f'<polyline points="{coords}" fill="none" stroke="{color}" '
                    f'stroke-width="1.8" stroke-dasharray="{s.dash}"/>',
                )
            run = []
    return out


@dataclass
class Dot:
    """One scatter point: its group (colour and marker), shade in [0, 1] (opacity), hover text."""

    x: float
    y: float
    group: str
    shade: float = 1.0
    tip: str = ""
    highlight: bool = False  # drawn as a black star above the rest (e.g. the full model)


def _marker(shape: str, x: float, y: float, r: float, fill: str, opacity: float, tip: str) -> str:
    common = f'fill="{fill}" fill-opacity="{opacity:.2f}" stroke="{fill}" stroke-width="0.8"'
    title = f"<title>{esc(tip)}</title>"
    if shape == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" {common}>{title}</rect>'
    if shape in ("triangle", "diamond", "star"):
        if shape == "triangle":
            pts = [(x, y - r * 1.2), (x + r * 1.1, y + r * 0.8), (x - r * 1.1, y + r * 0.8)]
        elif shape == "diamond":
            pts = [(x, y - r * 1.3), (x + r * 1.1, y), (x, y + r * 1.3), (x - r * 1.1, y)]
        else:
            pts = [
                (
                    x + (r * 1.8 if k % 2 == 0 else r * 0.8) * math.sin(k * math.pi / 5),
                    y - (r * 1.8 if k % 2 == 0 else r * 0.8) * math.cos(k * math.pi / 5),
                )
                for k in range(10)
            ]
        coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        return f'<polygon points="{coords}" {common}>{title}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" {common}>{title}</circle>'


def scatter(
    dots: Sequence[Dot],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    subtitle: str = "",
    width: int = 460,
    height: int = 340,
    highlight_label: str = "",
    shade_label: str = "",
    x_format: Callable[[float], str] = _num,
    y_format: Callable[[float], str] = _num,
) -> str:
    """A scatter: one colour and marker shape per group, opacity by shade, highlighted dots as stars,
    axes with ticks and a legend."""
    groups = list(dict.fromkeys(d.group for d in dots if not d.highlight))
    legend = groups + ([highlight_label] if highlight_label and any(d.highlight for d in dots) else [])
    xs = [d.x for d in dots if _finite(d.x) and _finite(d.y)]
    ys = [d.y for d in dots if _finite(d.x) and _finite(d.y)]
    out, f = _xy_frame(
        title=title,
        subtitle=subtitle,
        x_label=x_label,
        y_label=y_label,
        width=width,
        height=height,
        legend=legend + [shade_label],
        legend_rows=len(legend) + 2,
        min_plot_w=260,
        x_range=(min(xs, default=0.0), max(xs, default=1.0)),
        y_range=(min(ys, default=0.0), max(ys, default=1.0)),
        x_format=x_format,
        y_format=y_format,
    )
    ml, mt, pw, px, py = f.ml, f.mt, f.pw, f.px, f.py
    for d in sorted((d for d in dots if _finite(d.x) and _finite(d.y)), key=lambda d: d.highlight):
        if d.highlight:
            out.append(_marker("star", px(d.x), py(d.y), 4.0, "#000000", 1.0, d.tip))
            continue
        i = groups.index(d.group)
        out.append(
            _marker(
                MARKERS[i % len(MARKERS)],
                px(d.x),
                py(d.y),
                3.5,
                PALETTE[i % len(PALETTE)],
                0.25 + 0.75 * min(max(d.shade, 0.0), 1.0),
                d.tip,
            )
        )
    for i, name in enumerate(legend):
        ly = mt + 8 + i * 16
        if i < len(groups):
            out.append(_marker(MARKERS[i % len(MARKERS)], ml + pw + 20, ly, 3.5, PALETTE[i % len(PALETTE)], 1.0, name))
        else:
            out.append(_marker("star", ml + pw + 20, ly, 4.0, "#000000", 1.0, name))
        out.append(f'<text x="{ml + pw + 32}" y="{ly + 4}" {FONT}>{esc(name)}</text>')
    if shade_label:
        ly = mt + 8 + len(legend) * 16 + 6
        out.append(f'<text x="{ml + pw + 12}" y="{ly + 4}" {FONT} fill="#555">{esc(shade_label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def color_for(value: float, vmin: float = 0.0, vmax: float = 1.0) -> str:
    """The heatmap colour of a value on the SCALE between vmin and vmax (clamped)."""
    t = 0.0 if vmax <= vmin else min(max((value - vmin) / (vmax - vmin), 0.0), 1.0)
    pos = t * (len(SCALE) - 1)
    i = min(int(pos), len(SCALE) - 2)
    f = pos - i
    rgb = [round(a + (b - a) * f) for a, b in zip(SCALE[i], SCALE[i + 1])]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def heatmap(
    matrix: Sequence[Sequence[float | None]],
    row_labels: Sequence[object],
    col_labels: Sequence[object],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    subtitle: str = "",
    cell_titles: Sequence[Sequence[str]] | None = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cell: int = 26,
    scale_bar: bool = True,
) -> str:
    """A heatmap: rows top to bottom, columns left to right, a colour scale, hover titles.

    cell_titles[r][c] is the hover text of a cell (default: its value); None cells are grey. Small
    multiples leave out their colour scale (scale_bar=False) and share one drawn elsewhere.
    """
    nr, nc = len(row_labels), len(col_labels)
    ml, mt, mb, mr = (56 if scale_bar else 40), 44 if subtitle else 30, 44, (90 if scale_bar else 8)
    bar_h = max(nr * cell, 100) if scale_bar else nr * cell  # the colour scale's height
    width = int(max(ml + nc * cell + mr, _text_w(title) + 8, _text_w(subtitle) + 8))
    height = mt + max(nr * cell, bar_h) + mb
    out = _header(width, height, title, subtitle, 4)
    for r in range(nr):
        for c in range(nc):
            v = matrix[r][c]
            fill = color_for(v, vmin, vmax) if _finite(v) else "#cccccc"
            tip = cell_titles[r][c] if cell_titles is not None else (f"{_num(v)}" if _finite(v) else "n/a")
            out.append(
                f'<rect x="{ml + c * cell}" y="{mt + r * cell}" width="{cell}" '
                f'height="{cell}" fill="{fill}" stroke="#fff" stroke-width="0.5">'
                f"<title>{esc(tip)}</title></rect>"
            )
    for r, lab in enumerate(row_labels):
        out.append(
            f'<text x="{ml - 4}" y="{mt + r * cell + cell / 2 + 4:.1f}" {FONT} text-anchor="end">{esc(lab)}</text>'
        )
    for c, lab in enumerate(col_labels):
        out.append(
            f'<text x="{ml + c * cell + cell / 2:.1f}" y="{mt + nr * cell + 14}" {FONT} '
            f'text-anchor="middle">{esc(lab)}</text>'
        )
    out.append(
        f'<text x="{ml + nc * cell / 2:.1f}" y="{mt + nr * cell + 30}" {FONT} '
        f'text-anchor="middle">{esc(x_label)}</text>'
    )
    out.append(
        f'<text x="12" y="{mt + nr * cell / 2:.1f}" {FONT} text-anchor="middle" '
        f'transform="rotate(-90 12 {mt + nr * cell / 2:.1f})">{esc(y_label)}</text>'
    )
    if not scale_bar:
        out.append("</svg>")
        return "\n".join(out)
    # Colour scale: a stack of small rects (no gradient ids that could clash between charts).
    sx, steps = ml + nc * cell + 16, 20
    for k in range(steps):
        v = vmax - (vmax - vmin) * (k + 0.5) / steps
        out.append(
            f'<rect x="{sx}" y="{mt + k * bar_h / steps:.1f}" width="12" '
            f'height="{bar_h / steps + 0.5:.1f}" fill="{color_for(v, vmin, vmax)}"/>'
        )
    out.append(f'<text x="{sx + 16}" y="{mt + 9}" {FONT}>{esc(_num(vmax))}</text>')
    out.append(f'<text x="{sx + 16}" y="{mt + bar_h}" {FONT}>{esc(_num(vmin))}</text>')
    out.append("</svg>")
    return "\n".join(out)
