"""The benchmark's timeline pictures: binning, switch marks, the SVG text, the redraw command.
Pure code only: no Docker, no Caddy, no load."""

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import lab  # noqa: E402
import measure  # noqa: E402
import report  # noqa: E402
import timeline  # noqa: E402
from loadclient import Record  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"


def make_timeline(failed_at: dict[int, int] | None = None, marks=((5.5, "zdd: Switching traffic"),)) -> dict:
    """60 bins of 0.1 s from -1 s: 10 ok strict requests per bin, 1 long one every 10 bins."""
    strict_failed = [0] * 60
    for index, count in (failed_at or {}).items():
        strict_failed[index] = count
    return {
        "bin_s": 0.1, "first_bin_s": -1.0, "t0_unix": 1700000000.0, "command_returned_s": 4.2, "load_stops_s": 4.8,
        "kinds": {
            "strict": {"ok": [10] * 60, "failed": strict_failed},
            "retrying": {"ok": [10] * 60, "failed": [0] * 60},
            "long": {"ok": [1 if i % 10 == 0 else 0 for i in range(60)], "failed": [0] * 60},
        },
        "marks": [list(mark) for mark in marks],
    }


def deploy(failed: int = 0, tl: dict | None = None, to: str = "v2") -> dict:
    return {"strict_failed": failed, "retrying_failed": 0, "long_failed": 0, "to": to,
            "timeline": tl if tl is not None else make_timeline()}


def svg_root(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(element.itertext()) for element in root.iter(f"{SVG}text")]


def failure_bars(root: ET.Element) -> list[ET.Element]:
    return [rect for rect in root.iter(f"{SVG}rect") if rect.get("class") == "failed"]


def test_the_svg_parses_and_is_about_900_by_300():
    root = svg_root(timeline.render(make_timeline(), "zdd — zdd: git push", "deploy 1 of 1 (to v2)"))
    assert root.get("width") == "900"
    assert 250 <= int(root.get("height")) <= 340


def test_failures_are_red_bars_counted_in_the_title_and_their_lane():
    tl = make_timeline(failed_at={30: 4, 31: 1})
    root = svg_root(timeline.render(tl, "naive — naive: stop old, start new", "deploy 1 of 1 (to v2)"))
    bars = failure_bars(root)
    assert len(bars) == 2
    assert all(bar.get("fill") == timeline.FAILED_COLOUR for bar in bars)
    assert min(float(bar.get("height")) for bar in bars) >= timeline.MIN_FAILED_BAR
    # from t0 on (bin 10): 50 bins of 10 ok strict and 10 retrying, 5 long ones, and the 5 failed
    assert texts(root)[0] == "naive — naive: stop old, start new: 1010 requests, 5 failed"
    assert "5 failed" in texts(root)


def test_no_failures_draws_no_red_bar():
    root = svg_root(timeline.render(make_timeline(), "zdd — zdd: git push", "deploy 1 of 1"))
    assert failure_bars(root) == []
    assert texts(root)[0].endswith(": 1005 requests, 0 failed")


def test_the_switch_is_a_labelled_vertical_line_where_its_time_is():
    tl = make_timeline(marks=[(2.0, "Caddy reload"), (2.05, "v2 first served")])
    root = svg_root(timeline.render(tl, "blog — blog", "deploy 1 of 1"))
    switch_lines = [line for line in root.iter(f"{SVG}line") if line.get("stroke") == timeline.SWITCH_COLOUR]
    axis = timeline.Axis(tl)
    assert [float(line.get("x1")) for line in switch_lines] == [round(axis.x(2.0), 1), round(axis.x(2.05), 1)]
    assert all(line.get("x1") == line.get("x2") for line in switch_lines)
    labels = [t for t in root.iter(f"{SVG}text") if "".join(t.itertext()) in ("Caddy reload", "v2 first served")]
    assert len(labels) == 2
    assert labels[0].get("y") != labels[1].get("y")  # close together: one row each


def test_the_deploy_command_start_and_end_and_the_load_stopping_are_marked():
    svg = timeline.render(make_timeline(), "zdd — zdd: git push", "deploy 1 of 1")
    assert "deploy command starts" in svg and "command returns" in svg and "load stops" in svg


def test_marks_outside_the_picture_are_left_out_and_labels_stay_inside():
    tl = make_timeline(marks=[(99.0, "far too late"), (4.95, "a long label near the right edge")])
    root = svg_root(timeline.render(tl, "x — x", "deploy 1 of 1"))
    assert "far too late" not in texts(root)
    label = next(t for t in root.iter(f"{SVG}text") if "".join(t.itertext()) == "a long label near the right edge")
    assert label.get("text-anchor") == "end"


def test_text_is_escaped():
    root = svg_root(timeline.render(make_timeline(marks=[(1.0, "<v2> & \"more\"")]), "a & b", "c < d"))
    assert "<v2> & \"more\"" in texts(root)


def test_the_deploy_drawn_is_the_one_with_the_most_failures_first_on_ties():
    assert timeline.pick_deploy([deploy(0), deploy(3), deploy(3), deploy(1)]) == 1
    assert timeline.pick_deploy([deploy(0), deploy(0)]) == 0
    assert timeline.pick_deploy([{"strict_failed": 9, "retrying_failed": 0, "long_failed": 0}]) is None


def test_case_svg_says_which_deploy_it_draws():
    svg = timeline.case_svg("blog", "blog: blue/green", [deploy(0, to="v1"), deploy(2, make_timeline({20: 2}))])
    assert "deploy 2 of 2 (to v2): the one with the most failed requests" in svg


def test_write_pictures_names_them_by_case(tmp_path):
    written = timeline.write_pictures({"zdd": [deploy()], "old": [{"strict_failed": 0}]},
                                      {"zdd": "zdd: git push"}, tmp_path)
    assert written == {"zdd": tmp_path / "timeline-zdd.svg"}
    svg_root(written["zdd"].read_text())


def test_redrawing_from_a_json_without_timelines_says_so(tmp_path, capsys):
    old = tmp_path / "latest.json"
    old.write_text(json.dumps({"titles": {"zdd": "zdd"}, "deploys": {"zdd": [{"strict_failed": 0}]}}))
    assert timeline.main([str(old), "--out", str(tmp_path)]) == 1
    assert "has no timeline data" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.svg"))


def test_redrawing_from_a_json_with_timelines_writes_the_pictures(tmp_path, capsys):
    raw = tmp_path / "latest.json"
    raw.write_text(report.raw_json({"titles": {"zdd": "zdd: git push"}, "deploys": {"zdd": [deploy()]}}))
    assert timeline.main([str(raw), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "timeline-zdd.svg").exists()
    assert "timeline-zdd.svg" in capsys.readouterr().out


def test_a_missing_json_is_an_error_not_a_traceback(tmp_path, capsys):
    assert timeline.main([str(tmp_path / "none.json")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_requests_are_binned_by_when_they_finished():
    start = 100.0
    records = [Record(99.0, 100.05, True, "v1"), Record(100.0, 100.15, True, "v1"),
               Record(100.1, 100.19, False, "HTTP 502"), Record(99.0, 99.9, True, "v1"),
               Record(100.0, 100.35, True, "v2")]
    assert measure.binned(records, start, 3) == {"ok": [1, 1, 0], "failed": [0, 1, 0]}


def test_switch_marks_relative_to_the_deploy_command():
    figures = {"timeline": {"t0_unix": 1000.0, "first_bin_s": -1.0}, "zdd_switch_line_s": 5.5,
               "push_to_serving_s": 5.6, "to": "v2"}
    marks = measure.switch_marks(figures, [990.0, 1003.25])  # the first reload is from the setup
    assert marks == [(3.25, "Caddy reload"), (5.5, "zdd: Switching traffic"), (5.6, "v2 first served")]
    assert measure.switch_marks({**figures, "push_to_serving_s": None}, [])[-1][1] == "zdd: Switching traffic"


def test_raw_json_keeps_number_lists_on_one_line_and_strings_as_they_are():
    data = {"ok": [1, 2, 3], "floats": [0.5, -1.0], "text": "[1,\n 2]", "pairs": [[0.9, "Deploying [x]"]]}
    text = report.raw_json(data)
    assert '"ok": [1, 2, 3]' in text and '"floats": [0.5, -1.0]' in text
    assert json.loads(text) == data


def test_caddy_config_loads_read_from_its_log():
    log = "\n".join([
        '{"level":"info","ts":1700000000.5,"msg":"serving initial configuration"}',
        'not json "msg":"load complete"',
        '{"level":"info","ts":1700000003.25,"logger":"admin.api","msg":"load complete"}',
        '{"level":"info","ts":1700000004.0,"msg":"something else"}',
    ])
    assert lab.config_loads(log) == [(1700000000.5, "serving initial configuration"), (None, "load complete"),
                                     (1700000003.25, "load complete")]
