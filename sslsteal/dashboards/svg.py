"""Plots as inline SVG, drawn by hand: no JavaScript, no network, nothing to install, readable from file://.

A curve is a list of points (mean, with its 95% interval where there are several seeds) and the paper's values
as hollow diamonds. Line plots join the points and shade the interval as a band; scatter plots draw interval
bars on both axes. Points from a single seed are hollow circles (no interval).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
WIDTH, HEIGHT = 760, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 200, 16, 48
"""The plot area's margins; the right one holds the legend and grows with it."""
NOTE_ONE_RUN = "one run: no interval"


@dataclass(frozen=True)
class Point:
    """A mean (x, y) over n runs, its intervals (None: one seed), a label drawn beside it and a tooltip."""

    x: float
    y: float
    n: int = 1
    """Runs averaged; 0 for a single value that is not a mean (e.g. a study's best), drawn filled."""
    y_lo: float | None = None
    y_hi: float | None = None
    x_lo: float | None = None
    x_hi: float | None = None
    text: str = ""
    tip: str = ""


@dataclass(frozen=True)
class Curve:
    name: str
    points: list[Point]
    paper: list[Point] = field(default_factory=list)


@dataclass(frozen=True)
class Axes:
    x_label: str
    y_label: str
    log_x: bool = False
    log_y: bool = False
    hlines: list[tuple[float, str]] = field(default_factory=list)
    diagonal: bool = False
    connect: bool = True
    """Line plot (points joined, interval bands) or scatter (interval bars on both axes)."""
    legend_title: str = ""


class Scale:
    """Data -> pixel along one axis, linear or log10, over a padded domain."""

    def __init__(self, values: Sequence[float], log: bool, start: float, end: float) -> None:
        self.log = log
        kept = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
        t = [math.log10(v) for v in kept] if log else kept
        lo, hi = (min(t), max(t)) if t else (0.0, 1.0)
        pad = (hi - lo) * 0.06 if hi > lo else (0.5 if log else max(abs(lo) * 0.1, 1.0))
        self.lo, self.hi = lo - pad, hi + pad
        self.start, self.end = start, end

    def shown(self, v: float) -> bool:
        return math.isfinite(v) and (v > 0 or not self.log)

    def __call__(self, v: float) -> float:
        # on a log axis a value <= 0 (a p-value interval reaching 0) sits on the axis' floor
        t = (math.log10(v) if v > 0 else self.lo) if self.log else v
        t = min(max(t, self.lo), self.hi)  # clip interval ends beyond the domain
        return self.start + (t - self.lo) / (self.hi - self.lo) * (self.end - self.start)

    def ticks(self) -> list[float]:
        """Round values inside the domain: 1-2-5 steps (linear), or powers of ten with 2 and 5 between when few."""
        if self.log:
            first, last = math.floor(self.lo), math.ceil(self.hi)
            steps = (1, 2, 5) if last - first <= 3 else (1,)
            stride = max(1, (last - first) // 6)
            out = [m * 10.0**e for e in range(first, last + 1, stride) for m in steps]
            return [v for v in out if self.lo <= math.log10(v) <= self.hi]
        raw = (self.hi - self.lo) / 5
        power = 10 ** math.floor(math.log10(raw))
        step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
        first = math.ceil(self.lo / step)
        return [round(k * step, 12) for k in range(first, math.floor(self.hi / step) + 1)]


def _text_width(text: str, size: float) -> float:
    """A generous estimate of `text`'s width in pixels at font `size` (SVG text does not wrap or report its width)."""
    return 0.6 * size * len(text)


def _fmt(v: float) -> str:
    return f"{v:g}"


def _values(curves: Sequence[Curve], axis: str) -> Iterator[float]:
    for c in curves:
        for p in [*c.points, *c.paper]:
            yield from (v for v in (getattr(p, axis), getattr(p, f"{axis}_lo"), getattr(p, f"{axis}_hi")) if v is not None)


def plot(curves: Sequence[Curve], axes: Axes, title: str) -> str:
    """An SVG element with every curve, its bands or bars, the paper's values, reference lines and a legend, the
    plot as wide as its legend needs (a long series name is never cut)."""
    sx = Scale(list(_values(curves, "x")), axes.log_x, LEFT, WIDTH - RIGHT)
    sy = Scale([*_values(curves, "y"), *(y for y, _ in axes.hlines)], axes.log_y, HEIGHT - BOTTOM, TOP)
    legend_width = max([_text_width(axes.legend_title, 12), *(24 + _text_width(c.name, 11) for c in curves), 24 + _text_width(NOTE_ONE_RUN, 11)])
    width = WIDTH + max(0, round(16 + legend_width + 8 - RIGHT))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {width} {HEIGHT}" width="{width}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}">',
        *_frame(sx, sy, axes),
    ]
    for i, curve in enumerate(curves):
        out += _curve(curve, PALETTE[i % len(PALETTE)], sx, sy, axes.connect)
    out += _legend(curves, axes)
    out.append("</svg>")
    return "\n".join(out)


def _frame(sx: Scale, sy: Scale, axes: Axes) -> list[str]:
    """Axes, grid, tick labels, axis titles, reference lines and the diagonal."""
    x0, x1, y0, y1 = sx.start, sx.end, sy.start, sy.end
    out = [f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#999"/>']
    for v in sx.ticks():
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" y1="{y1}" x2="{x:.1f}" y2="{y0}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle" class="tick">{_fmt(v)}</text>')
    for v in sy.ticks():
        y = sy(v)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(v)}</text>')
    out.append(f'<text x="{(x0 + x1) / 2}" y="{HEIGHT - 10}" text-anchor="middle" class="axis">{escape(axes.x_label)}</text>')
    out.append(f'<text transform="translate(16 {(y0 + y1) / 2}) rotate(-90)" text-anchor="middle" class="axis">{escape(axes.y_label)}</text>')
    for v, text in axes.hlines:
        if sy.shown(v):
            y = sy(v)
            out.append(f'<line class="hline" x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#555" stroke-dasharray="6 4"/>')
            out.append(f'<text x="{x1 - 4}" y="{y - 4:.1f}" text-anchor="end" class="tick">{escape(text or _fmt(v))}</text>')
    if axes.diagonal:
        both = [v for v in (10**sx.lo if sx.log else sx.lo, 10**sx.hi if sx.log else sx.hi) if sy.shown(v)]
        if len(both) == 2:
            out.append(
                f'<line class="diagonal" x1="{sx(both[0]):.1f}" y1="{sy(both[0]):.1f}" x2="{sx(both[1]):.1f}" y2="{sy(both[1]):.1f}" '
                'stroke="#999" stroke-dasharray="3 3"/>'
            )
    return out


def _curve(curve: Curve, color: str, sx: Scale, sy: Scale, connect: bool) -> list[str]:
    points = [p for p in curve.points if sx.shown(p.x) and sy.shown(p.y)]
    if connect:
        points.sort(key=lambda p: p.x)
    name = escape(curve.name)
    out = [f'<g class="curve" data-series="{name}">']
    if connect:
        for run in _interval_runs(points):
            if len(run) > 1:
                upper = [(sx(p.x), sy(p.y_hi)) for p in run if p.y_hi is not None]
                lower = [(sx(p.x), sy(p.y_lo)) for p in reversed(run) if p.y_lo is not None]
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower)
                out.append(f'<polygon class="band" points="{path}" fill="{color}" fill-opacity="0.18" stroke="none"/>')
        if len(points) > 1:
            path = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
    banded = {id(p) for run in _interval_runs(points) if len(run) > 1 for p in run} if connect else set()
    for p in points:
        if p.y_lo is not None and p.y_hi is not None and id(p) not in banded:
            out.append(f'<line x1="{sx(p.x):.1f}" y1="{sy(p.y_lo):.1f}" x2="{sx(p.x):.1f}" y2="{sy(p.y_hi):.1f}" stroke="{color}"/>')
        if not connect and p.x_lo is not None and p.x_hi is not None:
            out.append(f'<line x1="{sx(p.x_lo):.1f}" y1="{sy(p.y):.1f}" x2="{sx(p.x_hi):.1f}" y2="{sy(p.y):.1f}" stroke="{color}"/>')
        fill = "white" if p.n == 1 else color
        out.append(
            f'<circle class="point" cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="4" fill="{fill}" stroke="{color}" stroke-width="1.5" '
            f'data-x="{p.x!r}" data-y="{p.y!r}" data-n="{p.n}"><title>{escape(p.tip)}</title></circle>'
        )
        if p.text:
            out.append(f'<text x="{sx(p.x) + 6:.1f}" y="{sy(p.y) - 6:.1f}" class="tick">{escape(p.text)}</text>')
    for p in curve.paper:
        if sx.shown(p.x) and sy.shown(p.y):
            x, y = sx(p.x), sy(p.y)
            out.append(
                f'<path class="paper" d="M{x:.1f},{y - 6:.1f} L{x + 6:.1f},{y:.1f} L{x:.1f},{y + 6:.1f} L{x - 6:.1f},{y:.1f} Z" fill="none" '
                f'stroke="{color}" stroke-width="1.5"><title>{escape(p.tip)}</title></path>'
            )
    out.append("</g>")
    return out


def _interval_runs(points: list[Point]) -> list[list[Point]]:
    """Consecutive points that all have an interval (a band is drawn over each run of two or more)."""
    runs: list[list[Point]] = [[]]
    for p in points:
        if p.y_lo is not None and p.y_hi is not None:
            runs[-1].append(p)
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def _legend(curves: Sequence[Curve], axes: Axes) -> list[str]:
    x, y = WIDTH - RIGHT + 16, TOP + 8
    out = ['<g class="legend">']
    if axes.legend_title:
        out.append(f'<text x="{x}" y="{y + 4}" class="axis">{escape(axes.legend_title)}</text>')
        y += 18
    entries = [(c.name, PALETTE[i % len(PALETTE)]) for i, c in enumerate(curves)]
    for name, color in entries:
        out.append(f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{color}" stroke-width="{2 if axes.connect else 0}"/>')
        out.append(f'<circle cx="{x + 9}" cy="{y}" r="4" fill="{color}"/>')
        out.append(f'<text x="{x + 24}" y="{y + 4}" class="tick">{escape(name)}</text>')
        y += 18
    notes = []
    if any(p.n == 1 for c in curves for p in c.points):
        notes.append(('<circle cx="{cx}" cy="{cy}" r="4" fill="white" stroke="#555" stroke-width="1.5"/>', NOTE_ONE_RUN))
    if any(c.paper for c in curves):
        notes.append(('<path d="M{cx},{top} L{right},{cy} L{cx},{bottom} L{left},{cy} Z" fill="none" stroke="#555" stroke-width="1.5"/>', "paper"))
    for shape, text in notes:
        cx, cy = x + 9, y
        out.append(shape.format(cx=cx, cy=cy, top=cy - 6, bottom=cy + 6, left=cx - 6, right=cx + 6))
        out.append(f'<text x="{x + 24}" y="{y + 4}" class="tick">{escape(text)}</text>')
        y += 18
    out.append("</g>")
    return out
