"""One timeline picture per case: requests completed over time for each kind of client,
the failed ones in red, the switch and the deploy command's start and end as vertical lines.

bench/run writes bench/timeline-<case>.svg next to RESULTS.md. To draw them again from
the raw figures of a run (standard library only, no Docker):

    python3 bench/timeline.py bench/results/latest.json [--out FOLDER]

The SVG is written by hand; each picture shows one deploy of its case, the one with the
most failed requests (the first one when they tie).
"""

import argparse
import json
import math
import sys
from pathlib import Path
from xml.sax.saxutils import escape

BENCH = Path(__file__).resolve().parent
WIDTH = 900
PLOT_LEFT, PLOT_RIGHT = 110, 885
TITLE_Y, CAPTION_Y = 18, 34
LABELS_TOP, LABEL_ROW_HEIGHT, LABEL_CHAR_WIDTH = 50, 11, 5.6
LANE_HEIGHT, OK_HEIGHT, FAILED_HEIGHT, MIN_FAILED_BAR = 64, 44, 12, 3
AXIS_HEIGHT = 40
OK_COLOUR, FAILED_COLOUR, SWITCH_COLOUR, COMMAND_COLOUR = "#8b949e", "#cf222e", "#0969da", "#57606a"
TICK_STEPS = (1, 2, 5, 10, 20, 30, 60)
MAX_TICKS = 16


def failed_requests(deploy: dict) -> int:
    return deploy["strict_failed"] + deploy["retrying_failed"] + deploy["long_failed"]


def pick_deploy(deploys: list[dict]) -> int | None:
    """The index of the deploy to draw: the one with the most failed requests, of those with a timeline."""
    drawable = [i for i, deploy in enumerate(deploys) if deploy.get("timeline")]
    return max(drawable, key=lambda i: (failed_requests(deploys[i]), -i), default=None)


def case_svg(case: str, title: str, deploys: list[dict]) -> str | None:
    """The picture of one case (None if no deploy of it has a timeline)."""
    index = pick_deploy(deploys)
    if index is None:
        return None
    deploy = deploys[index]
    caption = f"deploy {index + 1} of {len(deploys)} (to {deploy.get('to', '?')})"
    if len(deploys) > 1:
        caption += ": the one with the most failed requests"
    return render(deploy["timeline"], f"{case} — {title}", caption)


def totals(timeline: dict) -> dict[str, tuple[int, int]]:
    """(ok, failed) per kind of client, from the deploy command's start on (as the table counts)."""
    first = round(-timeline["first_bin_s"] / timeline["bin_s"])
    return {kind: (sum(bins["ok"][first:]), sum(bins["failed"][first:])) for kind, bins in timeline["kinds"].items()}


def render(timeline: dict, heading: str, caption: str) -> str:
    """The SVG text of one deploy's timeline (the "timeline" of its figures, see measure.py)."""
    counts = totals(timeline)
    requests = sum(ok + failed for ok, failed in counts.values())
    failed = sum(failed for _, failed in counts.values())
    axis = Axis(timeline)
    labels = place_labels(axis, marks(timeline))
    plot_top = LABELS_TOP + max((row for *_, row in labels), default=0) * LABEL_ROW_HEIGHT + 8
    plot_bottom = plot_top + LANE_HEIGHT * len(timeline["kinds"])
    height = plot_bottom + AXIS_HEIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="10">',
        f"<title>{text(heading)}</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="8" y="{TITLE_Y}" font-size="14" font-weight="bold">'
        f"{text(heading)}: {requests} requests, {failed} failed</text>",
        f'<text x="8" y="{CAPTION_Y}" font-size="11" fill="#444">{text(caption)}; '
        f"counts from the deploy command's start</text>",
        command_span(axis, timeline, plot_top, plot_bottom),
    ]
    for lane, (kind, bins) in enumerate(timeline["kinds"].items()):
        parts += lane_parts(axis, kind, bins, counts[kind], plot_top + lane * LANE_HEIGHT)
    parts += mark_parts(labels, plot_bottom)
    parts += axis_parts(axis, plot_bottom, timeline["bin_s"])
    parts.append("</svg>")
    return "\n".join(part for part in parts if part) + "\n"


class Axis:
    """Seconds since the deploy command started, to x in pixels."""

    def __init__(self, timeline: dict):
        self.bin_s = timeline["bin_s"]
        self.bins = max((len(bins["ok"]) for bins in timeline["kinds"].values()), default=0) or 1
        self.start = timeline["first_bin_s"]
        self.end = self.start + self.bins * self.bin_s

    def x(self, seconds: float) -> float:
        return PLOT_LEFT + (seconds - self.start) / (self.end - self.start) * (PLOT_RIGHT - PLOT_LEFT)

    def bin_x(self, index: int) -> float:
        return self.x(self.start + index * self.bin_s)

    def covers(self, seconds: float) -> bool:
        return self.start <= seconds <= self.end


def marks(timeline: dict) -> list[tuple[float, str, str]]:
    """(seconds, label, colour) of each vertical line: the command's start and end, the switch,
    and when the clients were told to stop (the long requests in flight then still finish)."""
    command = [(0.0, "deploy command starts", COMMAND_COLOUR),
               (timeline["command_returned_s"], "command returns", COMMAND_COLOUR)]
    if "load_stops_s" in timeline:
        command.append((timeline["load_stops_s"], "load stops", COMMAND_COLOUR))
    return sorted(command + [(seconds, label, SWITCH_COLOUR) for seconds, label in timeline["marks"]])


def place_labels(axis: Axis, wanted: list[tuple[float, str, str]]) -> list[tuple[float, str, str, str, int]]:
    """(x, label, colour, text-anchor, row) for each mark in the plot, in the first row where its
    label overlaps no other; a label that would leave the picture hangs left of its line."""
    rows: list[list[tuple[float, float]]] = []
    placed = []
    for seconds, label, colour in wanted:
        if not axis.covers(seconds):
            continue
        x, width = axis.x(seconds), len(label) * LABEL_CHAR_WIDTH
        anchor = "start" if x + 3 + width <= WIDTH - 4 else "end"
        span = (x + 3, x + 3 + width) if anchor == "start" else (x - 3 - width, x - 3)
        row = next((i for i, used in enumerate(rows) if all(span[1] < a or span[0] > b for a, b in used)), len(rows))
        if row == len(rows):
            rows.append([])
        rows[row].append(span)
        placed.append((x, label, colour, anchor, row))
    return placed


def command_span(axis: Axis, timeline: dict, top: float, bottom: float) -> str:
    left, right = axis.x(max(0.0, axis.start)), axis.x(min(timeline["command_returned_s"], axis.end))
    return (f'<rect x="{left:.1f}" y="{top}" width="{max(right - left, 0):.1f}" height="{bottom - top}" '
            f'fill="#eef3f9"/>')


def lane_parts(axis: Axis, kind: str, bins: dict, count: tuple[int, int], top: float) -> list[str]:
    baseline = top + OK_HEIGHT
    ok, failed = count
    peak = max(bins["ok"], default=0)
    failed_style = f'fill="{FAILED_COLOUR}" font-weight="bold"' if failed else 'fill="#444"'
    parts = [
        f'<rect x="{PLOT_LEFT}" y="{top}" width="{PLOT_RIGHT - PLOT_LEFT}" height="{OK_HEIGHT}" '
        f'fill="none" stroke="#d0d7de"/>',
        f'<text x="8" y="{top + 14}" font-size="12" font-weight="bold">{text(kind)}</text>',
        f'<text x="8" y="{top + 28}" fill="#444">{ok + failed} requests</text>',
        f'<text x="8" y="{top + 40}" {failed_style}>{failed} failed</text>',
        f'<text x="{PLOT_LEFT - 4}" y="{top + 8}" text-anchor="end" fill="#888" font-size="9">{peak}</text>',
        ok_area(axis, bins["ok"], top, baseline, peak),
    ]
    return parts + failed_bars(axis, bins["failed"], baseline + 1)


def ok_area(axis: Axis, ok: list[int], top: float, baseline: float, peak: int) -> str:
    """A stepped area: the requests that completed ok in each bin, scaled to the lane's peak."""
    if not peak:
        return ""
    points = [f"M{axis.bin_x(0):.1f},{baseline}"]
    for index, value in enumerate(ok):
        y = baseline - value / peak * (baseline - top)
        points.append(f"L{axis.bin_x(index):.1f},{y:.1f}L{axis.bin_x(index + 1):.1f},{y:.1f}")
    points.append(f"L{axis.bin_x(len(ok)):.1f},{baseline}Z")
    return f'<path d="{"".join(points)}" fill="{OK_COLOUR}"/>'


def failed_bars(axis: Axis, failed: list[int], top: float) -> list[str]:
    """A red bar under the lane for each bin with failed requests, at least MIN_FAILED_BAR high."""
    peak = max(failed, default=0)
    bars = []
    for index, value in enumerate(failed):
        if value:
            left, right = axis.bin_x(index), axis.bin_x(index + 1)
            height = max(MIN_FAILED_BAR, value / peak * FAILED_HEIGHT)
            seconds = axis.start + index * axis.bin_s
            bars.append(f'<rect class="failed" x="{left:.1f}" y="{top}" width="{max(right - left, 1):.1f}" '
                        f'height="{height:.1f}" fill="{FAILED_COLOUR}"><title>{value} failed at '
                        f'{seconds:.1f}–{seconds + axis.bin_s:.1f} s</title></rect>')
    return bars


def mark_parts(labels: list[tuple[float, str, str, str, int]], bottom: float) -> list[str]:
    parts = []
    for x, label, colour, anchor, row in labels:
        y = LABELS_TOP + row * LABEL_ROW_HEIGHT
        dash = ' stroke-dasharray="4 3"' if colour == COMMAND_COLOUR else ""
        parts.append(f'<line x1="{x:.1f}" y1="{y + 2}" x2="{x:.1f}" y2="{bottom}" stroke="{colour}" '
                     f'stroke-width="1.5"{dash}/>')
        parts.append(f'<text x="{x + (3 if anchor == "start" else -3):.1f}" y="{y}" text-anchor="{anchor}" '
                     f'fill="{colour}">{text(label)}</text>')
    return parts


def axis_parts(axis: Axis, bottom: float, bin_s: float) -> list[str]:
    step = next((s for s in TICK_STEPS if (axis.end - axis.start) / s <= MAX_TICKS), TICK_STEPS[-1])
    parts = [f'<line x1="{PLOT_LEFT}" y1="{bottom}" x2="{PLOT_RIGHT}" y2="{bottom}" stroke="#444"/>']
    for tick in range(math.ceil(axis.start / step) * step, math.floor(axis.end) + 1, step):
        x = axis.x(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#444"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle">{tick}</text>')
    parts.append(f'<text x="{PLOT_LEFT}" y="{bottom + 30}" fill="#444">grey: completed per {bin_s * 1000:.0f} ms '
                 f"(peak top left) · red: failed · blue: the switch · shaded: the deploy command</text>")
    parts.append(f'<text x="{PLOT_RIGHT}" y="{bottom + 30}" text-anchor="end" fill="#444">'
                 f"seconds since the deploy command started</text>")
    return parts


def text(value: str) -> str:
    return escape(str(value), {'"': "&quot;"})


def picture_name(case: str) -> str:
    return f"timeline-{case}.svg"


def write_pictures(results: dict[str, list[dict]], titles: dict[str, str], folder: Path) -> dict[str, Path]:
    """timeline-<case>.svg in ``folder`` for each case with timeline data; the files written, by case."""
    written = {}
    for case, deploys in results.items():
        svg = case_svg(case, titles.get(case, case), deploys)
        if svg is not None:
            path = folder / picture_name(case)
            path.write_text(svg)
            written[case] = path
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/timeline.py", description="Draw bench/timeline-<case>.svg "
                                     "again from the raw figures of a bench/run.")
    parser.add_argument("json", nargs="?", type=Path, default=BENCH / "results" / "latest.json",
                        help="the raw figures (default bench/results/latest.json)")
    parser.add_argument("--out", type=Path, default=BENCH, help="where to write the pictures (default bench/)")
    args = parser.parse_args(argv)
    try:
        raw = json.loads(args.json.read_text())
    except (OSError, ValueError) as error:
        print(f"bench/timeline.py: cannot read {args.json}: {error}", file=sys.stderr)
        return 1
    results = raw.get("deploys", {})
    args.out.mkdir(parents=True, exist_ok=True)
    written = write_pictures(results, raw.get("titles", {}), args.out)
    if not written:
        print(f"bench/timeline.py: {args.json} has no timeline data: it was written by a bench/run from "
              f"before the timelines were kept; run bench/run again to get them. Nothing drawn.", file=sys.stderr)
        return 1
    for path in written.values():
        print(f"wrote {path}")
    for case in results.keys() - written.keys():
        print(f"no timeline data for {case}: not drawn", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
