"""The zdd command: a thin layer that calls the library and turns its errors into one line."""

import argparse
import json
import os
import sys
import traceback

from zdd import __version__, config, deploy, gitrepo, hook, install, state
from zdd.errors import GitError, ZddError


def emit(line: str) -> None:
    print(line, flush=True)


def cmd_hook(server, args) -> int:
    os.environ.pop("GIT_DIR", None)  # set by git for the hook; zdd names the repo itself
    return hook.handle_push(server, args.app, sys.stdin.read(), emit)


def cmd_deploy(server, args) -> int:
    sha = gitrepo.resolve_commit(gitrepo.open_repo(server.repo_path(args.app)), args.ref)
    deploy.deploy(server, args.app, sha, args.ref, emit)
    return 0


def cmd_rollback(server, args) -> int:
    app_dir = server.app_dir(args.app)
    config.load_app(server, args.app)
    if args.ref:
        return cmd_deploy(server, args)
    target = previous_live(state.read_history(app_dir), state.read_live(app_dir))
    if target is None:
        raise GitError(f"{args.app} has no earlier live version to roll back to: name a ref")
    emit(f"==> Rolling back to {target['sha'][:12]} ({target['ref']})")
    deploy.deploy(server, args.app, target["sha"], target["ref"], emit)
    return 0


def previous_live(history: list[dict], live: dict | None) -> dict | None:
    """The most recent successful deploy of a SHA other than the live one."""
    current = live and live["sha"]
    for entry in reversed(history):
        if entry.get("outcome") == "live" and entry["sha"] != current:
            return entry
    return None


def cmd_status(server, args) -> int:
    config.load_app(server, args.app)
    live = state.read_live(server.app_dir(args.app))
    if args.json:
        print(json.dumps(live or {"app": args.app, "sha": None}, indent=2, sort_keys=True))
    elif live:
        print(f"{args.app}: {live['sha'][:12]} ({live['ref']}) live since {live['deployed_at']}")
        print(f"  container {live['container']} -> {live['upstream']}, image {live['image'][:60]}")
    else:
        print(f"{args.app}: nothing deployed yet")
    return 0


def cmd_history(server, args) -> int:
    config.load_app(server, args.app)
    entries = state.read_history(server.app_dir(args.app))
    if args.json:
        print(json.dumps(entries, indent=2, sort_keys=True))
        return 0
    for entry in entries:
        steps = " ".join(f"{k}={v:.1f}s" for k, v in entry.get("steps", {}).items())
        line = f"{entry['finished_at']}  {entry['sha'][:12]}  {entry['ref']:<20} {entry['outcome']:<6} by {entry.get('by')}  {steps}"
        if entry.get("reason"):
            line += f"\n    {entry['reason']}"
        print(line)
    if not entries:
        print(f"{args.app}: no deploys yet")
    return 0


def cmd_init(root, args) -> int:
    install.init_app(root, args.app, args.domain, args.port, args.branch, emit,
                     caddyfile=args.caddyfile, caddy_admin=args.caddy_admin,
                     caddy_bin=args.caddy_bin, templates=args.templates, hook_template=args.hook_template)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zdd", description="git push-to-deploy for Docker apps behind Caddy.",
        epilog="example: zdd status myapp --json",
    )
    parser.add_argument("--version", action="version", version=f"zdd {__version__}")
    parser.add_argument("--root", help="zdd's state folder (default: $ZDD_ROOT or /srv/zdd)")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, func, help_text, ref=None):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("app")
        if ref:
            p.add_argument("ref", nargs="?" if ref == "optional" else None,
                           help="branch, tag or commit SHA")
        p.set_defaults(func=func)
        return p

    command("hook", cmd_hook, "run by the post-receive hook: deploy what stdin's ref lines name")
    command("deploy", cmd_deploy, "deploy a ref of the app's repository", ref="required")
    command("rollback", cmd_rollback, "deploy REF, or by default the previous live version", ref="optional")
    command("status", cmd_status, "show what is live").add_argument("--json", action="store_true")
    command("history", cmd_history, "list every deploy with its outcome and step timings").add_argument(
        "--json", action="store_true")
    init = command("init", cmd_init, "set up an app (install.sh runs this)")
    init.add_argument("--domain", required=True, help="Caddy site address: example.com, http://host:port, :port")
    init.add_argument("--port", help="the port the app listens on in its container")
    init.add_argument("--branch", default="main", help="the branch that deploys (default: main)")
    init.add_argument("--caddyfile", help="the Caddyfile zdd renders")
    init.add_argument("--caddy-admin", help="Caddy's admin address, HOST:PORT")
    init.add_argument("--caddy-bin", help="absolute path of the caddy binary")
    init.add_argument("--templates", help="folder holding Caddyfile.j2")
    init.add_argument("--hook-template", help="the post-receive shim to install (hooks/post-receive)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "init":
            return args.func(args.root or os.environ.get("ZDD_ROOT") or config.DEFAULT_ROOT, args)
        return args.func(config.load_server(args.root), args)
    except ZddError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except Exception as error:  # a bug, or an engine error zdd has no name for
        return _fail(f"unexpected {type(error).__name__}: {error}")


def _fail(message: str) -> int:
    if os.environ.get("ZDD_DEBUG"):
        traceback.print_exc()
    print(f"zdd: error: {message}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
