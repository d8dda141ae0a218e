"""Turn the per-deploy figures into the printed tables, the target verdicts and RESULTS.md."""

import json
import re
import statistics

from measure import median_and_worst

ZDD_CASES = ("zdd", "zdd-rollback", "zdd-ignore-term")
STEPS = ("config", "build", "start", "health", "switch", "drain")
ROLLBACK_MARGIN = 1.5
OVERHEAD_TARGETS = {"zdd": 0.25, "zdd-rollback": 0.2, "zdd-ignore-term": 0.25}  # median, s (issue 22)
PICTURES_ARE = "one deploy per case, the one with the most failed requests"
# a list of numbers as json.dumps(indent=2) spreads it, one per line (no string holds a raw newline)
NUMBER_LIST = re.compile(r"\[\n\s+[-+.\deE]+(?:,\n\s+[-+.\deE]+)*\n\s*\]")

# header, figure key, format of one number
COLUMNS = [
    ("strict failed", "strict_failed", "{:.0f}"),
    ("retrying failed", "retrying_failed", "{:.0f}"),
    ("long lost", "long_in_flight_lost", "{:.0f}"),
    ("failure window s", "failure_window_s", "{:.2f}"),
    ("p50 ms", "latency_p50_ms", "{:.0f}"),
    ("p99 ms", "latency_p99_ms", "{:.0f}"),
    ("max ms", "latency_max_ms", "{:.0f}"),
    ("push-to-serving s", "push_to_serving_s", "{:.2f}"),
    ("zdd overhead s", "zdd_overhead_s", "{:.2f}"),
    ("Swarm rollout s", "swarm_rollout_s", "{:.2f}"),
]
FAILURES = ("strict_failed", "retrying_failed", "long_failed")


def cell(deploys: list[dict], key: str, fmt: str) -> str:
    """'median (worst)' of one figure over a case's deploys; '-' where it does not apply."""
    summary = median_and_worst([d.get(key) for d in deploys])
    if summary is None:
        return "-"
    median, worst = summary
    return f"{fmt.format(median)} ({fmt.format(worst)})"


def markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    line = lambda values: "| " + " | ".join(str(v).ljust(w) for v, w in zip(values, widths)) + " |"
    return [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]


def results_table(results: dict[str, list[dict]], titles: dict[str, str]) -> list[str]:
    rows = [[titles[case], str(len(deploys)), *(cell(deploys, key, fmt) for _, key, fmt in COLUMNS)]
            for case, deploys in results.items()]
    return markdown_table(["case", "deploys", *(h for h, _, _ in COLUMNS)], rows)


def steps_table(results: dict[str, list[dict]], titles: dict[str, str]) -> list[str]:
    rows = []
    for case, deploys in results.items():
        if case in ZDD_CASES and deploys:
            rows.append([titles[case], *(cell([d["zdd_steps"] for d in deploys], step, "{:.2f}") for step in STEPS)])
    return markdown_table(["zdd steps, s: median (worst)", *STEPS], rows) if rows else []


def requests_line(results: dict[str, list[dict]]) -> str:
    deploys = [d for ds in results.values() for d in ds]
    median = lambda key: _median(deploys, key)
    return (f"Per deploy (median): {median('strict_requests') + median('retrying_requests'):.0f} short requests, "
            f"{median('long_requests'):.0f} long ones, "
            f"{median('long_in_flight'):.0f} long ones in flight at the switch.")


def targets(results: dict[str, list[dict]], app_start: float,
            hook_start: float | None = None) -> list[tuple[str, str, str]]:
    """(verdict, target, evidence) for each of zdd's targets that this run measured.
    ``hook_start``: the hook's Python start-up and imports alone, measured idle."""
    return _deploy_targets(results, app_start, hook_start) + _neighbour_targets(results) + _swarm_targets(results)


def _swarm_targets(results: dict[str, list[dict]]) -> list[tuple[str, str, str]]:
    verdicts = []
    rolled, refused = results.get("swarm"), results.get("swarm-failing")
    if rolled:
        evidence = _rollout_evidence(rolled)
        if results.get("zdd"):
            evidence += f"; one server's push-to-serving: {_median(results['zdd'], 'push_to_serving_s'):.2f} s median"
        verdicts.append((_met(rolled), "Swarm: a push rolls 3 web replicas over 3 nodes with 0 failed requests "
                                       "of every kind", evidence))
        spread = [d for d in rolled if _spread(d)]
        verdicts.append(("MET" if len(spread) == len(rolled) else "MISSED",
                         "Swarm: every push ends with the 3 web replicas on 3 distinct nodes",
                         f"{len(spread)} of {len(rolled)} pushes ended spread; piled: "
                         + (", ".join("+".join(d.get("web_nodes", [])) for d in rolled if d not in spread) or "none")))
    parallel = results.get("swarm-parallel")
    if parallel:
        evidence = _rollout_evidence(parallel)
        if rolled:
            evidence += f", one at a time {_median(rolled, 'swarm_rollout_s'):.2f} s"
        spread = sum(1 for d in parallel if _spread(d))
        verdicts.append((_met(parallel) if spread == len(parallel) else "MISSED",
                         "Swarm: `parallelism = 2` rolls 3 replicas two at a time, spread, with 0 failed requests",
                         f"{evidence}; {spread} of {len(parallel)} pushes ended spread"))
    if refused:
        verdicts.append((_met(refused), "Swarm: a version that never gets healthy is rolled back by Swarm, "
                                        "with 0 failed requests of every kind", _worst_failures(refused)))
    return verdicts


def _rollout_evidence(deploys: list[dict]) -> str:
    median, most = median_and_worst([d["swarm_rollout_s"] for d in deploys])
    return f"{_worst_failures(deploys)}; every replica rolled in {median:.2f} s median ({most:.2f} s worst)"


def _spread(deploy: dict) -> bool:
    """The push left the web replicas on 3 distinct nodes."""
    return len(set(deploy.get("web_nodes", []))) == 3


def _median(deploys: list[dict], key: str) -> float:
    return statistics.median(d[key] for d in deploys)


def _worst_failures(deploys: list[dict]) -> str:
    worst = {key: max(d[key] for d in deploys) for key in FAILURES}
    return (f"worst of {len(deploys)}: strict {worst['strict_failed']}, retrying {worst['retrying_failed']}, "
            f"long {worst['long_failed']} failed")


def _met(deploys: list[dict]) -> str:
    return "MET" if not any(d[key] for d in deploys for key in FAILURES) else "MISSED"


def _neighbour_targets(results: dict[str, list[dict]]) -> list[tuple[str, str, str]]:
    deploys = results.get("neighbours")
    if not deploys:
        return []
    worst = {key: max(d[key] for d in deploys) for key in ("strict_failed", "retrying_failed", "long_failed")}
    reloads = sum(d["caddy_reloads"] for d in deploys)
    evidence = (f"worst of {len(deploys)} rounds: strict {worst['strict_failed']}, retrying "
                f"{worst['retrying_failed']}, long {worst['long_failed']} failed; Caddy reloaded {reloads} times")
    own = results.get("neighbours-own-ports")
    if own:
        evidence += (f"; with ports of its own instead: Caddy reloaded {sum(d['caddy_reloads'] for d in own)} "
                     f"times, strict failed {max(d['strict_failed'] for d in own)} at worst")
    return [("MET" if not any(worst.values()) and reloads == 0 else "MISSED",
             "another app (host names) installed, first-deployed, re-addressed and destroyed: 0 failed "
             "requests of any kind for an app under load, and no Caddy reload", evidence)]


def _deploy_targets(results: dict[str, list[dict]], app_start: float,
                    hook_start: float | None) -> list[tuple[str, str, str]]:
    zdd = {case: results[case] for case in ZDD_CASES if results.get(case)}
    if not zdd:
        return []
    deploys = [d for ds in zdd.values() for d in ds]
    worst = lambda key: {case: max(d[key] for d in ds) for case, ds in zdd.items()}
    verdict = lambda ok, target, evidence: ("MET" if ok else "MISSED", target, evidence)

    retrying = worst("retrying_failed")
    verdicts = [verdict(not any(retrying.values()), "retrying clients: 0 failed in every zdd deploy and rollback",
                        _per_case("worst", retrying, "{:.0f}"))]
    lost, failed = worst("long_in_flight_lost"), worst("long_failed")
    verdicts.append(verdict(
        not any(lost.values()) and not any(failed.values()),
        "long requests: 0 lost in every zdd deploy, also when the app exits at once on SIGTERM",
        f"lost of those in flight at the switch: {_per_case('worst', lost, '{:.0f}')}; "
        f"failed at any time: {_per_case('worst', failed, '{:.0f}')}"))
    strict = worst("strict_failed")
    reloads = sum(d["caddy_reloaded"] for d in deploys)
    verdicts.append(verdict(not any(strict.values()), "strict clients: 0 failed in every zdd deploy",
                            f"{_per_case('worst', strict, '{:.0f}')}; Caddy reloaded in {reloads} "
                            f"of {len(deploys)} measured zdd deploys"))
    if zdd.get("zdd-rollback"):
        limit = ROLLBACK_MARGIN + app_start
        median, most = median_and_worst([d["push_to_serving_s"] for d in zdd["zdd-rollback"]])
        verdicts.append(verdict(most <= limit, f"rollback by tag: push-to-serving within {ROLLBACK_MARGIN} s "
                                f"+ app start ({app_start:.2f} s) = {limit:.2f} s, every time",
                                f"median {median:.2f} s, worst {most:.2f} s"))
    verdicts.append(_overhead_target(zdd, hook_start))
    if zdd.get("zdd") and results.get("naive"):
        verdicts.append(_versus_naive(zdd["zdd"], results["naive"], app_start))
    return verdicts


def _overhead_target(zdd: dict[str, list[dict]], hook_start: float | None) -> tuple[str, str, str]:
    """zdd's own time around the engine's and the app's, and how much of it passes before
    zdd's first line (git, then the hook's Python start-up and imports: paid per push)."""
    met = all(_median(ds, "zdd_overhead_s") < OVERHEAD_TARGETS[case] for case, ds in zdd.items())
    evidence = ", ".join(f"{case} median {_median(ds, 'zdd_overhead_s'):.2f} s (target {OVERHEAD_TARGETS[case]} s), "
                         f"{_median(ds, 'zdd_first_line_s'):.2f} s of it before zdd's first line"
                         for case, ds in zdd.items())
    if hook_start is not None:
        evidence += (f"; the hook's Python start-up and imports alone take {hook_start:.2f} s on the idle machine "
                     "(docker, GitPython, Jinja2: every push needs them), the floor of a hook that starts per push")
    return ("MET" if met else "MISSED",
            "zdd overhead (push-to-serving - build - start - health): median under 0.25 s, rollback by tag under 0.2 s",
            evidence)


def _versus_naive(pushes: list[dict], naive: list[dict], app_start: float) -> tuple[str, str, str]:
    """A code-only push against stopping the old container and starting a prebuilt image."""
    step = lambda name: statistics.median(d["zdd_steps"][name] for d in pushes)
    zdd, stop_start = _median(pushes, "push_to_serving_s"), _median(naive, "push_to_serving_s")
    evidence = (f"zdd median {zdd:.2f} s, naive {stop_start:.2f} s; zdd's extra: its first line "
                f"{_median(pushes, 'zdd_first_line_s'):.2f} s, a cached build {step('build'):.2f} s (naive starts "
                f"an image built before), health seen {step('health') - app_start:.2f} s after the app's own start")
    return ("MET" if zdd <= stop_start else "MISSED",
            "push-to-serving of a code-only change no more than naive's stop-and-start, in the same run", evidence)


def _per_case(what: str, figures: dict[str, float], fmt: str) -> str:
    return ", ".join(f"{case} {what} {fmt.format(value)}" for case, value in figures.items())


def targets_lines(verdicts: list[tuple[str, str, str]]) -> list[str]:
    return [f"- {verdict}: {target} ({evidence})" for verdict, target, evidence in verdicts]


def pictures_line(pictures: dict[str, str], titles: dict[str, str]) -> str:
    links = ", ".join(f"[{titles.get(case, case)}]({name})" for case, name in pictures.items())
    return f"Timelines ({PICTURES_ARE}): {links}."


def pictures_section(pictures: dict[str, str], titles: dict[str, str]) -> list[str]:
    """The end of RESULTS.md: each case's timeline picture."""
    if not pictures:
        return []
    lines = ["The build bench (`bench/run-builds`) writes its own table: [RESULTS-builds.md](RESULTS-builds.md); "
             "the data bench (`bench/run-data`: backups, restores, deduplication) its own: [RESULTS-data.md](RESULTS-data.md).", "",
             "## Timelines", "", f"Requests over time, {PICTURES_ARE} (`python3 bench/timeline.py` draws them "
             "again from the JSON):", ""]
    for case, name in pictures.items():
        lines += [f"![{titles.get(case, case)}]({name})", ""]
    return lines


def raw_json(data: dict) -> str:
    """Indented JSON with each list of numbers (the timelines' bins) on one line."""
    text = json.dumps(data, indent=2)
    return NUMBER_LIST.sub(lambda match: "[" + " ".join(match.group(0)[1:-1].split()) + "]", text) + "\n"
