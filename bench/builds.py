"""The build bench: how long a push takes to serve a realistic Python app (Flask on the Debian
base image, a requirements file of 12 wheels installed with pip from a wheel folder in the
repository: nothing from the internet during the build) after (a) a code-only change and (b) a
dependency change, with and without a pip cache mount. Each figure: push-to-serving (the push
until the new version answers through Caddy) and zdd's build step.

    bench/run-builds [--repeat 3]        figures to the terminal and bench/RESULTS-builds.md
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lab
from probes import wait_for

BENCH = Path(__file__).resolve().parent
CHECKOUT = BENCH.parent
BASE_IMAGE = "zdd-base/python:bookworm"
REQUIREMENTS = ["requests", "rich", "sqlalchemy"]  # with their dependencies: 12 wheels, about 9 MB
APP = '''from flask import Flask
app = Flask(__name__)
VERSION = "{version}"

@app.get("/")
def index():
    return VERSION
'''
DOCKERFILE = f"""FROM {BASE_IMAGE}
WORKDIR /app
COPY wheels /wheels
COPY requirements.txt .
RUN {{mount}}python3 /wheels/PIP/pip install --break-system-packages --no-index --find-links /wheels \\
    -r requirements.txt
COPY app.py .
EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "app:app"]
"""
CACHE_MOUNT = "--mount=type=cache,target=/root/.cache/pip "
CASES = {  # name: (cache mount, what changes)
    "code, no cache mount": ("", "code"),
    "dependency, no cache mount": ("", "dependency"),
    "code, pip cache mount": (CACHE_MOUNT, "code"),
    "dependency, pip cache mount": (CACHE_MOUNT, "dependency"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="pushes per case (default 3)")
    parser.add_argument("--markdown", type=Path, default=BENCH / "RESULTS-builds.md")
    args = parser.parse_args()
    subprocess.run([str(CHECKOUT / "scripts" / "make-python-image")], check=True)
    folder = Path(tempfile.mkdtemp(prefix="zdd-bench-builds-"))
    server = lab.ZddServer(folder)
    server.caddy.start()
    try:
        wheels = download_wheels(folder / "wheels")
        figures = {name: run_case(server, folder, wheels, name, *spec, args.repeat) for name, spec in CASES.items()}
    finally:
        for app in json.loads(server.zdd("apps", "--json")) if (server.root / "settings.json").exists() else []:
            server.zdd("destroy", app["app"], "--yes")
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    report = markdown(figures, args.repeat)
    print(report)
    args.markdown.write_text(report)
    return 0


def download_wheels(folder: Path) -> Path:
    """The app's dependencies as wheels, fetched once from PyPI on this machine (the build itself
    reads them from the repository), and pip itself, which runs from its wheel."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(folder),
                    "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux2014_x86_64", "--platform", "any", "pip", *REQUIREMENTS], check=True)
    return folder


def run_case(server, folder: Path, wheels: Path, name: str, mount: str, change: str, repeat: int) -> list[dict]:
    app = "build-" + name.replace(",", "").replace(" ", "-")
    site = f"http://127.0.0.1:{lab.free_port()}"
    server.install(app, site)
    work = folder / app
    shutil.copytree(wheels, work / "wheels")
    pip = next(p.name for p in wheels.glob("pip-*.whl"))
    (work / "Dockerfile").write_text(DOCKERFILE.replace("{mount}", mount).replace("PIP", pip))
    git(work, "init", "-q", "-b", "main")
    git(work, "remote", "add", "production", str(server.repo(app)))
    commit(work, "v0", requirements="\n".join(REQUIREMENTS))
    push(work, site, "v0")  # the first build: every layer, not measured
    measured = []
    for round_ in range(1, repeat + 1):
        version = f"v{round_}"
        extra = f"\n# {version}" if change == "dependency" else ""  # pip's layer runs again
        commit(work, version, requirements="\n".join(REQUIREMENTS) + extra)
        seconds = push(work, site, version)
        steps = json.loads(server.zdd("history", app, "--json"))[-1]["steps"]
        measured.append({"push_to_serving_s": seconds, "build_s": steps["build"]})
        print(f"  {name:<30} {round_}  serving {seconds:.2f}s  build {steps['build']:.2f}s", flush=True)
    return measured


def commit(work: Path, version: str, requirements: str) -> None:
    (work / "app.py").write_text(APP.format(version=version))
    (work / "requirements.txt").write_text(requirements + "\n")
    git(work, "add", "-A")
    git(work, "-c", "user.email=bench@example.com", "-c", "user.name=bench", "commit", "-q", "-m", version)


def push(work: Path, site: str, version: str) -> float:
    started = time.monotonic()
    done = subprocess.run(["git", "push", "-q", "production", "main"], cwd=work, capture_output=True, text=True)
    if done.returncode != 0 or "is live at" not in done.stderr:
        raise RuntimeError(f"the push of {version} did not deploy:\n{done.stderr}")
    if not wait_for(lambda: lab.http_get(site + "/") == (200, version), timeout=60, interval=0.02):
        raise RuntimeError(f"{version} is not served at {site}")
    return round(time.monotonic() - started, 2)


def git(work: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=work, check=True, capture_output=True)


def markdown(figures: dict[str, list[dict]], repeat: int) -> str:
    lines = ["# Build bench", "",
             f"`bench/run-builds --repeat {repeat}`: a Flask app on `{BASE_IMAGE}`, its requirements "
             f"({', '.join(REQUIREMENTS)} and their dependencies: 12 wheels) installed with pip from a wheel "
             "folder in the repository; each push changes the code only, or the requirements file (above "
             "pip's layer, so it runs again). Median (worst) of the pushes.", "",
             "| change, build | pushes | push-to-serving s | build step s |", "|---|---|---|---|"]
    for name, rows in figures.items():
        serving = [r["push_to_serving_s"] for r in rows]
        build = [r["build_s"] for r in rows]
        lines.append(f"| {name} | {len(rows)} | {statistics.median(serving):.2f} ({max(serving):.2f}) | "
                     f"{statistics.median(build):.2f} ({max(build):.2f}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
