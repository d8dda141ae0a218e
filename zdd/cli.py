"""The zdd command: a thin layer that calls the library and turns its errors into one line."""

import argparse
import datetime
import json
import os
import sys
import traceback
from pathlib import Path

# Modules that load docker, git or jinja2 (0.3 s of CPU) are imported by the commands that
# use them: the laptop client, `zdd env` and `zdd keys` skip it.
from zdd import __version__, appenv
from zdd import app as apps
from zdd import backup_target, config, keys, limits, processes, remote, retention, runtimes, schedule, sshgate, state
from zdd.errors import GitError, InvalidInput, ZddError


def emit(line: str) -> None:
    print(line, flush=True)


def _app(server, args):
    """The app the command names, and the server's runtime."""
    return apps.load(server, args.app), runtimes.runtime_for(server)


def cmd_hook(server, args) -> int:
    from zdd import hook
    os.environ.pop("GIT_DIR", None)  # set by git for the hook; zdd names the repo itself
    return hook.handle_push(server, args.app, sys.stdin.read(), emit)


def cmd_deploy(server, args) -> int:
    from zdd import deploy, gitrepo
    app, runtime = _app(server, args)
    sha = gitrepo.resolve_commit(app.repo(), args.ref)
    deploy.deploy(app, runtime, sha, args.ref, emit)
    return 0


def cmd_rollback(server, args) -> int:
    from zdd import deploy
    app, runtime = _app(server, args)
    if args.ref:
        return cmd_deploy(server, args)
    target = retention.previous_live(app.history(), app.live())
    if target is None:
        raise GitError(f"{args.app} has no earlier live version to roll back to: name a ref")
    emit(f"==> Rolling back to {target['sha'][:12]} ({target['ref']})")
    deploy.deploy(app, runtime, target["sha"], target["ref"], emit)
    return 0


def cmd_status(server, args) -> int:
    from zdd import backups, jobs, ops
    app, runtime = _app(server, args)
    live = ops.checked_live(app, runtime, lambda line: print(line, file=sys.stderr))
    table = ops.process_table(app, runtime, live)
    ops.collect_crashes(server, runtime)
    seen = ops.live_crashes(app, live)
    if args.json:
        print(json.dumps({**live, "process_table": table, "crashes": seen[-20:]} if live
                         else {"app": args.app, "sha": None}, indent=2, sort_keys=True))
    elif live:
        print(f"{args.app}: {live['sha'][:12]} ({live['ref']}) live since {live['deployed_at']}")
        lines = runtime.status_lines(app, live, table) + [ops.limits_line(table)] + ops.crash_lines(app.name, seen)
        for line in lines:
            if line:
                print(line)
    else:
        print(f"{args.app}: nothing deployed yet")
    if not args.json:
        notes = ops.maintenance_lines(app) + jobs.status_lines(app, live) + backups.status_lines(app)
        notes += ops.disk_warnings(server, runtime.client)
        for line in notes:
            print(line)
    return 0


def cmd_history(server, args) -> int:
    from zdd import crashes, engine, ops
    app, runtime = _app(server, args)
    entries = app.history()
    kept = {image["sha"] for image in engine.app_images(runtime.client, args.app)}
    for entry in entries:
        entry["image_kept"] = entry["sha"] in kept
    if args.json:
        print(json.dumps(entries, indent=2, sort_keys=True))
        return 0
    ops.collect_crashes(server, runtime)
    events = [(entry["finished_at"], _deploy_lines(entry)) for entry in entries]
    events += [(crash["at"], _crash_lines(crash)) for crash in crashes.read(app.dir)]
    for _, lines in sorted(events, key=lambda event: event[0]):
        print("\n".join(lines))
    if not entries:
        print(f"{args.app}: no deploys yet")
    return 0


def _deploy_lines(entry: dict) -> list[str]:
    steps = " ".join(f"{k}={v:.1f}s" for k, v in entry.get("steps", {}).items())
    image = "image kept" if entry["image_kept"] else "pruned"
    lines = [f"{entry['finished_at']}  {entry['sha'][:12]}  {entry['ref']:<20} {entry['outcome']:<6} "
             f"{image:<10}  by {entry.get('by')}  {steps}"]
    return lines + ([f"    {entry['reason']}"] if entry.get("reason") else [])


def _crash_lines(crash: dict) -> list[str]:
    return [f"{crash['at']}  {(crash['sha'] or '?')[:12]}  {crash['process']:<20} crash   "
            f"{crash['container']}: {crash['reason']}, restarted by Docker"]


def cmd_init(root, args) -> int:
    from zdd import install
    install.init_app(root, args.app, args.domain, args.port, args.branch, emit, keep_images=args.keep,
                     caddyfile=args.caddyfile, caddy_admin=args.caddy_admin,
                     caddy_bin=args.caddy_bin, templates=args.templates, hook_template=args.hook_template,
                     deploy_user=args.deploy_user, http_port=args.http_port, https_port=args.https_port,
                     tls=args.tls, registry=args.registry)
    return 0


def cmd_apps(server, args) -> int:
    from zdd import backups, ops
    rows = ops.overview(server, runtimes.runtime_for(server))
    if args.only is not None:
        rows = [row for row in rows if row["app"] in args.only.split(",")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no apps yet: set one up with install.sh APP --domain ADDRESS")
        return 0
    print(f"{'APP':<20} {'SHA':<12} {'AGE':>8}  {'UPSTREAM':<16} {'HEALTH':<10} {'PROCESSES':<20} "
          f"{'IMAGES':>9} {'VOLUMES':>9}  ADDRESS")
    for row in rows:
        sha = (row["sha"] or "-")[:12]
        age = schedule.age_text(row["age_seconds"]) if row["age_seconds"] is not None else "-"
        counts = " ".join(f"{name}={count}" for name, count in row["processes"].items()) or "-"
        sizes = f"{backups.size_text(row['images_bytes']):>9} {backups.size_text(row['volumes_bytes']):>9}"
        print(f"{row['app']:<20} {sha:<12} {age:>8}  {row['upstream'] or '-':<16} {row['health']:<10} "
              f"{counts:<20} {sizes}  {row['domain']}")
    return 0


def cmd_env(server, args) -> int:
    app_dir = apps.load(server, args.app).dir
    if args.action == "set":
        pairs = dict(appenv.parse_assignment(item) for item in args.items)
        appenv.update(app_dir, pairs, [])
        emit(f"set {', '.join(sorted(pairs))} for {args.app}: applies at the next deploy or `zdd restart {args.app}`")
    elif args.action == "unset":
        appenv.update(app_dir, {}, args.items)
        emit(f"unset {', '.join(args.items)} for {args.app}: applies at the next deploy or `zdd restart {args.app}`")
    else:
        for line in appenv.masked(appenv.read(app_dir), args.show):
            print(line)
    return 0


def cmd_render(server, args) -> int:
    outcome = runtimes.runtime_for(server).refresh_routes(emit, force=args.force)
    if outcome == "unchanged":
        emit(f"{server.caddyfile} is up to date: nothing to reload")
    return 0


def cmd_logs(server, args) -> int:
    from zdd import ops
    app, runtime = _app(server, args)
    for text in ops.logs(app, runtime, args.follow, args.tail, args.process):
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def cmd_restart(server, args) -> int:
    from zdd import ops
    ops.restart(*_app(server, args), emit)
    return 0


def cmd_destroy(server, args) -> int:
    from zdd import ops, preview_apps
    app, runtime = _app(server, args)
    if not args.yes:
        if not sys.stdin.isatty():
            raise InvalidInput(f"destroying {args.app} needs confirmation: run it in a terminal, or add --yes")
        answer = input(f"Destroy {args.app}: its site, containers, images, repository and history? "
                       f"Type the app's name to confirm: ")
        if answer.strip() != args.app:
            emit("not destroyed")
            return 1
    for preview in preview_apps.of_parent(server, app.name).values():  # they deploy from its repository
        ops.destroy(preview, runtime, emit, with_storage=True)
    ops.destroy(app, runtime, emit, with_storage=args.storage)
    return 0


def cmd_scale(server, args) -> int:
    from zdd import ops
    app, runtime = _app(server, args)
    if args.counts:
        ops.scale(app, runtime, processes.parse_scale(args.counts, runtime.web_scales), emit)
        return 0
    table = ops.process_table(app, runtime, app.live())
    for name, row in table.items():
        print(f"{name}={row['wanted']}  ({len(row['containers'])} running)")
    if not table:
        saved = app.scale
        print(" ".join(f"{name}={count}" for name, count in saved.items()) or f"{args.app}: nothing deployed yet")
    return 0


def cmd_limits(server, args) -> int:
    from zdd import ops
    app, runtime = _app(server, args)
    if args.limits:
        ops.set_limits(app, runtime, limits.parse_items(args.limits), emit)
        return 0
    live = app.live()
    names = [p.name for p in processes.declared_in(live)] if live else [processes.WEB]
    for name in sorted(set(names) | set(app.limits.own)):
        default = name not in app.limits.own and app.limits.default != limits.NO_LIMIT
        print(f"{name}={app.limits.of(name).as_text()}{'  (the server default)' if default else ''}")
    return 0


def cmd_cron(server, args) -> int:
    from zdd import cron, jobs, oneoff
    app, runtime = _app(server, args)
    if args.action == "run":
        if len(args.job) != 1:
            raise InvalidInput(f"zdd cron {args.app} run JOB: name one job (`zdd cron {args.app}` lists them)")
        record = jobs.run(app, runtime.client, args.job[0], emit, scheduled=args.scheduled)
        if record["outcome"] != "ok":
            emit(f"cron job {args.job[0]}: {record['outcome']}" + (f" (exit code {record['exit_code']})"
                                                                    if record["exit_code"] is not None else ""))
        return 0 if record["outcome"] == "ok" else 1
    live, declared = jobs.live_jobs(app)
    last = {record["job"]: record for record in jobs.runs(app)}
    now = datetime.datetime.now(datetime.timezone.utc)
    for job in declared:
        upcoming = cron.next_run(job.schedule, now)
        print(f"{job.name:<20} {job.schedule:<16} next {upcoming.isoformat() if upcoming else 'never'}  "
              f"({oneoff.shown(job.command)})")
        record = last.get(job.name)
        if record is None:
            print("    not run yet")
            continue
        took = f", took {record['took']}s" if record["took"] is not None else ""
        print(f"    last run {record['finished_at']}: {record['outcome']}"
              f"{'' if record['exit_code'] is None else ', exit code ' + str(record['exit_code'])}{took}"
              f"{': ' + record['reason'] if record['reason'] else ''}")
        for line in record["output"][-5:]:
            print(f"      | {line}")
    if not declared:
        print(f"{args.app}: no cron jobs" + (" in the live version's zdd.toml ([cron])" if live else " (nothing live)"))
    return 0


def cmd_previews(server, args) -> int:
    from zdd import preview_apps
    app, runtime = _app(server, args)
    if args.state is not None:
        given = {"domain": args.domain, "except": args.except_keys, "max": args.max, "days": args.days,
                 "limit": args.limit, "seed": args.seed_from_backup}
        if args.state == "off" and any(v is not None for v in given.values()):
            raise InvalidInput("zdd previews APP off takes no options")
        preview_apps.configure(app, args.state == "on", given, emit)
        return 0
    rows = preview_apps.rows(app)
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    for row in rows:
        print(f"{row['branch']:<24} {row['url']:<40} {row['sha'] or 'not live':<12}  created {row['created_at']}  "
              f"last push {row['last_push']}")
    if not rows:
        print(f"{app.name}: no previews")
    return 0


def cmd_maintenance(server, args) -> int:
    from zdd import caddy, ops, routing
    app, runtime = _app(server, args)
    if args.state is None:
        since = caddy.maintenance_since(routing.route_dir(server, app.name))
        print(f"{app.name}: maintenance " + (f"on since {state.iso(since)}" if since else "off"))
        return 0
    ops.maintenance(app, runtime, args.state == "on", args.message, emit)
    return 0


def cmd_storage(server, args) -> int:
    from zdd import ops
    if args.action in ("add", "remove") and len(args.items) != 1:
        raise InvalidInput(f"zdd storage APP {args.action} takes one argument: "
                           + ("NAME:/path/in/container or FOLDER:/path" if args.action == "add" else "NAME or /path"))
    app, runtime = _app(server, args)
    if args.action == "add":
        ops.add_storage(app, runtime, args.items[0], emit)
    elif args.action == "remove":
        ops.remove_storage(app, args.items[0], emit)
    else:
        mounts = app.mounts
        for mount in mounts:
            print(mount.describe())
        if not mounts:
            print(f"{args.app}: no storage (add some with zdd storage {args.app} add NAME:/path/in/container)")
    return 0


def cmd_run(server, args) -> int:
    command = args.words
    extra = dict(appenv.parse_assignment(item) for item in args.env)
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    app, runtime = _app(server, args)
    return runtime.run(app, command, args.process, extra, tty)


def cmd_db(server, args) -> int:
    from zdd import backups, databases
    app, runtime = _app(server, args)
    if args.action in ("create", "destroy", "upgrade") and not args.kind:
        raise InvalidInput(f"zdd db {args.action} takes APP and a service type: postgres or redis")
    if args.target and args.action != "upgrade":
        raise InvalidInput(f"unexpected {args.target!r}: only `zdd db upgrade APP TYPE VERSION` takes a version there")
    if args.action == "upgrade":
        from zdd import upgrade
        if args.undo:
            upgrade.undo(app, runtime, args.kind, emit)
        else:
            upgrade.upgrade(app, runtime, args.kind, args.target or args.version, args.image, emit)
    elif args.action == "create":
        databases.create(app, runtime, args.kind, args.version, args.image, emit)
    elif args.action == "destroy":
        databases.destroy(app, runtime, args.kind, args.data, emit)
    elif args.action == "connect":
        return databases.connect(app, runtime, args.kind, sys.stdin.isatty() and sys.stdout.isatty())
    else:
        rows = databases.rows(app, runtime)
        if args.json:
            print(json.dumps(rows, indent=2, sort_keys=True))
        for row in [] if args.json else rows:
            size = backups.size_text(row["size_bytes"]) if (row["size_bytes"] or -1) >= 0 else "-"
            last = row["last_backup"]
            backed = f"last backup {last['id']} {last['outcome']}" if last else "never backed up"
            print(f"{row['service']:<9} {row['state']:<9} {row['image']:<24} volume {row['volume']} ({size})  "
                  f"{row['env']}  {backed}")
            if row["upgraded_from"]:
                print(f"          upgraded from {row['upgraded_from']}, which is kept stopped: "
                      f"`zdd db upgrade {args.app} {row['service']} --undo` goes back to it")
        if not rows and not args.json:
            print(f"{args.app}: no databases (add one with zdd db create {args.app} postgres)")
    return 0


def cmd_backup(server, args) -> int:
    from zdd import backups, restore
    app, runtime = _app(server, args)
    if args.schedule is not None:
        return _set_schedule(app, args.schedule, args.keep)
    if args.keep:
        raise InvalidInput("--keep goes with --schedule: zdd backup APP --schedule daily --keep daily=14")
    with backups.locked(app):
        if args.check is not None:
            restore.check(app, runtime.client, None if args.check == "latest" else args.check, emit)
        else:
            backups.backup(app, runtime.client, emit)
    return 0


def _set_schedule(app, period: str, keep: list[str]) -> int:
    from zdd import backups
    if period == "off":
        schedule.write(app.dir, None)
        emit(f"{app.name}: no scheduled backups any more (the backups taken stay)")
        return 0
    plan = schedule.Schedule(period, schedule.parse_period(period), schedule.parse_keep(keep), state.now_iso())
    if not backups.items_of(app):
        raise InvalidInput(f"{app.name} has nothing to back up yet: no database (zdd db create) and no storage")
    schedule.write(app.dir, plan)
    kept = ", ".join(f"{unit} {count}" for unit, count in plan.keep.items())
    emit(f"{app.name}: backed up every {period} by the server's backup timer; kept: {kept}")
    return 0


def cmd_notify(server, args) -> int:
    from zdd import notify
    if args.action == "add":
        if len(args.items) != 1:
            raise InvalidInput("zdd notify add URL [--events deploy,failed,crash,backup] [--app APP] "
                               "[--format json|slack|discord]: name one URL")
        if args.app is not None:
            apps.load(server, args.app)
        notify.add(server, args.items[0], args.events, args.app, args.format, emit)
    elif args.action == "remove":
        if len(args.items) != 1:
            raise InvalidInput("zdd notify remove ID: name one webhook (`zdd notify` lists them)")
        notify.remove(server, args.items[0], emit)
    elif args.action == "test":
        notify.send(server.root, notify.event("deploy", args.app or "zdd-test", None, "a test event from zdd notify"))
        emit(f"sent to every webhook that takes deploy events; see {server.root / notify.LOG}")
    else:
        for hook in notify.read(server.root):
            print(hook.describe())
    return 0


def cmd_backup_target(server, args) -> int:
    if args.action == "set":
        if not args.items:
            raise InvalidInput("zdd backup-target set URL [KEY=VALUE ...]: name the target")
        backup_target.set_target(server, args.items[0], args.items[1:], args.ssh_key, emit)
    elif args.action == "off":
        backup_target.clear_target(server, emit)
    else:
        for line in backup_target.target_lines(server):
            print(line)
    return 0


def cmd_backup_due(server, args) -> int:
    from zdd import backups, jobs, ops, preview_apps
    runtime = runtimes.runtime_for(server)
    stamped = lambda line: emit(f"{state.now_iso()} {line}")  # noqa: E731 (the schedule's log)
    now = datetime.datetime.now(datetime.timezone.utc)
    jobs.start_due(server, lambda name: apps.load(server, name), now, stamped)
    preview_apps.remove_stale(server, runtime, now, stamped)
    for crash in ops.collect_crashes(server, runtime):
        stamped(f"{crash['app']}: {crash['process']} ({crash['container']}) crashed: {crash['reason']}")
    failed = backups.run_due(server, runtime.client, lambda name: apps.load(server, name), stamped)
    if failed:
        stamped(f"{failed} scheduled backup(s) failed")
    return 1 if failed else 0


def cmd_backups(server, args) -> int:
    from zdd import backups
    app = apps.load(server, args.app)
    entries = backups.listing(app)
    if args.json:
        print(json.dumps(entries, indent=2, sort_keys=True))
        return 0
    for entry in entries:
        size = backups.size_text(sum(i["bytes"] for i in entry["items"])) if entry["items"] else "-"
        items = ",".join(i["item"] for i in entry["items"]) or "-"
        where = entry["where"] if entry["stored"] else "no longer stored" if entry["outcome"] == "ok" else "-"
        print(f"{entry['id']:<24} {entry['finished_at']}  {entry['outcome']:<6} {size:>9}  {items:<28} "
              f"{entry['reason']:<24} {where}")
        if entry.get("error"):
            print(f"    {entry['error']}")
    if not entries:
        print(f"{args.app}: no backups yet (zdd backup {args.app})")
    return 0


def cmd_restore(server, args) -> int:
    from zdd import backups, restore
    app, runtime = _app(server, args)
    with backups.locked(app):
        restore.restore(app, runtime, args.backup, args.service, emit)
    return 0


def cmd_keys(server, args) -> int:
    if args.action == "list":
        for key in keys.read(server.root):
            print(f"{key.name:<20} {key.kind:<12} {key.scope()}")
        return 0
    if len(args.names) != 1:
        raise InvalidInput(f"zdd keys {args.action} takes one key name")
    if args.action == "add":
        if args.admin == bool(args.apps):
            raise InvalidInput("say what the key may do: --apps APP[,APP...] or --admin")
        text = Path(args.file).read_text() if args.file else sys.stdin.read()
        keys.add_key(server, args.names[0], text, args.apps.split(",") if args.apps else [], args.admin, emit)
    else:
        keys.remove_key(server, args.names[0], emit)
    return 0


def cmd_ssh(server, args) -> int:
    """The forced command of a zdd key (see zdd/sshgate.py)."""
    return sshgate.serve(server, args.key, os.environ.get("SSH_ORIGINAL_COMMAND"), main)


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
    sub.add_parser("apps", help="list apps with live SHA, age, upstream and health",
                   description="list apps with live SHA, age, upstream and health").set_defaults(func=cmd_apps)
    sub.choices["apps"].add_argument("--json", action="store_true")
    sub.choices["apps"].add_argument("--only", help=argparse.SUPPRESS)  # set by the SSH gate for app keys
    key_commands = sub.add_parser("keys", help="SSH keys that may push and run zdd, and nothing else",
                                  description="zdd keys add NAME (--apps A,B | --admin) [--file KEY.pub] "
                                              "(or the key on stdin); zdd keys list; zdd keys remove NAME")
    key_commands.add_argument("action", choices=["add", "list", "remove"])
    key_commands.add_argument("names", nargs="*", metavar="NAME")
    key_commands.add_argument("--apps", help="the apps this key may push and run zdd for, comma-separated")
    key_commands.add_argument("--admin", action="store_true", help="every app, and the server-wide commands")
    key_commands.add_argument("--file", help="the public key file (default: standard input)")
    key_commands.set_defaults(func=cmd_keys)
    gate = sub.add_parser("ssh", help="the forced command of a zdd key in authorized_keys (not for people)")
    gate.add_argument("key")
    gate.set_defaults(func=cmd_ssh)
    env = command("env", cmd_env, "set, unset or list an app's environment variables (values hidden)")
    env.add_argument("action", choices=["set", "unset", "list"])
    env.add_argument("items", nargs="*", metavar="KEY=VALUE | KEY")
    env.add_argument("--show", action="store_true", help="list: print the values too")
    render = sub.add_parser("render", help="render the Caddyfile from the template now, and reload Caddy if it changed",
                            description="render the Caddyfile from the template now, and reload Caddy if it changed")
    render.add_argument("--force", action="store_true", help="overwrite edits made to the Caddyfile by hand")
    render.set_defaults(func=cmd_render)
    logs = command("logs", cmd_logs, "print the log of the live version's containers (web, or --process)")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--process", default=processes.WEB, help="which process (default: web)")
    logs.add_argument("--tail", type=int, default=100, help="lines from the end (default 100)")
    command("restart", cmd_restart, "start the live SHA afresh, with no downtime (applies env changes)")
    destroy = command("destroy", cmd_destroy, "remove an app: site, containers, images, repository, history")
    destroy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    destroy.add_argument("--storage", action="store_true", help="remove its storage (volumes, folders) too")
    scale = command("scale", cmd_scale, "set how many containers of each process run (kept across deploys)")
    scale.add_argument("counts", nargs="*", metavar="PROCESS=COUNT", help="e.g. worker=3 (0 stops it)")
    limit = command("limits", cmd_limits, "cap each process's memory and CPU: web=512m worker=256m,0.5cpu "
                                          "(kept across deploys; web=none takes it off)")
    limit.add_argument("limits", nargs="*", metavar="PROCESS=LIMIT", help="e.g. web=512m or worker=256m,0.5cpu")
    jobs_parser = command("cron", cmd_cron, "the live version's scheduled jobs ([cron] in zdd.toml): list them "
                                            "with their last run, or run one now")
    jobs_parser.add_argument("action", nargs="?", choices=["list", "run"], default="list")
    jobs_parser.add_argument("job", nargs="*", metavar="JOB")
    jobs_parser.add_argument("--scheduled", action="store_true", help=argparse.SUPPRESS)  # started by the timer
    pause = command("maintenance", cmd_maintenance, "answer every request of the app with a 503 page (the "
                                                    "repository's maintenance.html, or zdd's), or stop; no state: show it")
    pause.add_argument("state", nargs="?", choices=["on", "off"])
    pause.add_argument("--message", help="on: the text of zdd's page")
    preview = command("previews", cmd_previews, "an app of its own for each pushed branch: on --domain "
                                                "'{branch}.preview.example.com', off; no state: list them")
    preview.add_argument("state", nargs="?", choices=["on", "off"])
    preview.add_argument("--domain", help="on: the previews' address, {branch} its first label")
    preview.add_argument("--except", dest="except_keys", metavar="KEY,...", help="on: env keys not copied to previews")
    preview.add_argument("--max", type=int, help="on: how many previews at most (default 5)")
    preview.add_argument("--days", type=float, help="on: remove a preview this many days after its last push (14)")
    preview.add_argument("--limit", help="on: memory and CPU of each preview container (default 512m,1cpu)")
    preview.add_argument("--seed-from-backup", action=argparse.BooleanOptionalAction, default=None,
                         help="on: a new preview's databases get the app's latest backup (else they start empty)")
    preview.add_argument("--json", action="store_true")
    mounts = command("storage", cmd_storage, "storage that survives deploys: add NAME:/path, list, remove NAME")
    mounts.add_argument("action", choices=["add", "list", "remove"])
    mounts.add_argument("items", nargs="*", metavar="NAME:/path | FOLDER:/path | NAME")
    run = command("run", cmd_run, "run a one-off command in a fresh container of the live version")
    run.add_argument("--process", help="run this process's command (when no command is given)")
    run.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                     help="extra variable for this run only")
    run.add_argument("words", nargs="*", metavar="CMD", help="-- then the command and its arguments")
    db = sub.add_parser("db", help="databases beside an app: create, list, connect, upgrade, destroy",
                        description="zdd db create APP postgres|redis [--version V | --image I]; zdd db list APP; "
                                    "zdd db connect APP [TYPE]; zdd db upgrade APP postgres VERSION [--image I] "
                                    "| --undo; zdd db destroy APP TYPE [--data]")
    db.add_argument("action", choices=["create", "list", "connect", "upgrade", "destroy"])
    db.add_argument("app")
    db.add_argument("kind", nargs="?", metavar="TYPE", help="postgres or redis")
    db.add_argument("target", nargs="?", metavar="VERSION", help="upgrade: the major version to move to")
    db.add_argument("--undo", action="store_true", help="upgrade: go back to the version before the last upgrade")
    db.add_argument("--version", help="create: the official image's version (postgres 17, redis 7 by default)")
    db.add_argument("--image", help="create, upgrade: run this image instead (it must honour the official image's contract)")
    db.add_argument("--data", action="store_true", help="destroy: remove its data volume too")
    db.add_argument("--json", action="store_true")
    db.set_defaults(func=cmd_db)
    backup = command("backup", cmd_backup, "back up the app's databases and storage into its restic repository")
    backup.add_argument("--check", nargs="?", const="latest", metavar="BACKUP",
                        help="instead: restore the latest (or this) backup into scratch containers and verify it")
    backup.add_argument("--schedule", metavar="PERIOD", help="instead: back up every PERIOD (hourly, daily, weekly, "
                                                            "30m, 6h, 2d) from now on; off stops it")
    backup.add_argument("--keep", action="append", default=[], metavar="UNIT=COUNT",
                        help="with --schedule: what to keep (default last=3 daily=7 weekly=4)")
    hooks = sub.add_parser("notify", help="webhooks for deploy, failed, crash and backup events: add URL, list, "
                                          "remove ID, test", description="zdd notify add URL [--events E,...] "
                                          "[--app APP] [--format json|slack|discord]; zdd notify; zdd notify remove ID")
    hooks.add_argument("action", nargs="?", choices=["add", "list", "remove", "test"], default="list")
    hooks.add_argument("items", nargs="*", metavar="URL | ID")
    hooks.add_argument("--events", help="which events, comma-separated (default: every one)")
    hooks.add_argument("--app", help="only this app's events (default: every app's)")
    hooks.add_argument("--format", default="json", help="json (signed, the default), slack or discord")
    hooks.set_defaults(func=cmd_notify)
    target = sub.add_parser("backup-target", help="where backups go: this server (default) or off-site",
                            description="zdd backup-target set URL [KEY=VALUE ...] (restic's URL: s3:https://HOST/"
                                        "BUCKET/PATH, sftp:USER@HOST:/PATH; credentials such as AWS_ACCESS_KEY_ID=...); "
                                        "zdd backup-target show; zdd backup-target off")
    target.add_argument("action", choices=["set", "show", "off"])
    target.add_argument("items", nargs="*", metavar="URL KEY=VALUE")
    target.add_argument("--ssh-key", metavar="FILE", help="set, sftp: the SSH key to log in with (absolute path)")
    target.set_defaults(func=cmd_backup_target)
    sub.add_parser("backup-due", help="run by the server's timer each minute: the crashes Docker saw, and the "
                                      "scheduled backups due now",
                   description="run by the server's timer each minute").set_defaults(func=cmd_backup_due)
    command("backups", cmd_backups, "list the app's backups: age, outcome, size, where").add_argument(
        "--json", action="store_true")
    restore_command = command("restore", cmd_restore, "restore a backup (the latest by default), after a safety backup")
    restore_command.add_argument("backup", nargs="?", help="the backup's id (zdd backups APP lists them)")
    restore_command.add_argument("--service", metavar="ITEM", help="only this part: postgres, redis or storage:NAME")
    init = command("init", cmd_init, "set up an app (install.sh runs this)")
    init.add_argument("--keep", type=int, help="how many recent images to keep for rollbacks (default 5)")
    init.add_argument("--domain", required=True, help="Caddy site address: example.com, http://host:port, :port")
    init.add_argument("--port", help="the port the app listens on in its container")
    init.add_argument("--branch", default="main", help="the branch that deploys (default: main)")
    init.add_argument("--caddyfile", help="the Caddyfile zdd renders")
    init.add_argument("--caddy-admin", help="Caddy's admin address, HOST:PORT")
    init.add_argument("--caddy-bin", help="absolute path of the caddy binary")
    init.add_argument("--templates", help="folder holding Caddyfile.j2")
    init.add_argument("--hook-template", help="the post-receive shim to install (hooks/post-receive)")
    init.add_argument("--deploy-user", help="the user whose authorized_keys `zdd keys` manages")
    init.add_argument("--http-port", help="port of the shared HTTP site of host-named apps (default 80)")
    init.add_argument("--https-port", help="port of the shared HTTPS site of host-named apps (default 443)")
    init.add_argument("--tls", help="acme (certificates from a public CA, the default) or internal (Caddy's own CA)")
    init.add_argument("--registry", help="Swarm mode: the cluster's registry, HOST:PORT (install.sh --swarm)")
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        remote_name, argv = _remote_choice(argv)
        if remote_name:
            return remote.run(remote_name, argv)
    except ZddError as error:
        return _fail(str(error))
    after_dashes = []
    if "--" in argv and "run" in argv[:argv.index("--")]:  # `zdd run APP [opts] -- CMD ARGS`: CMD's own options
        after_dashes = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    args = build_parser().parse_args(argv)
    if args.command == "run" and after_dashes:
        args.words = after_dashes
    try:
        if args.command == "init":
            return args.func(args.root or os.environ.get("ZDD_ROOT") or config.DEFAULT_ROOT, args)
        return args.func(config.load_server(args.root), args)
    except ZddError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except Exception as error:  # the engine gone, a bug, or an engine error zdd has no name for
        if _engine_failed(error):
            return _fail(f"the Docker engine failed or went away ({type(error).__name__}: {error}): "
                         "check that dockerd runs, then push again")
        return _fail(f"unexpected {type(error).__name__}: {error}")


def _engine_failed(error: Exception) -> bool:
    """A Docker SDK error or a lost connection to the engine (neither can be raised by a
    command that never imported the SDK)."""
    docker_errors, requests_errors = sys.modules.get("docker.errors"), sys.modules.get("requests.exceptions")
    return bool((docker_errors and isinstance(error, docker_errors.DockerException))
                or (requests_errors and isinstance(error, requests_errors.ConnectionError)))


SERVER_ONLY = {"init", "hook", "ssh", "backup-due"}


def _remote_choice(argv: list[str]) -> tuple[str | None, list[str]]:
    """Which git remote to run the command through, if any: ``--remote NAME`` first, or
    ``production`` when this machine is no zdd server (no settings) and no --root is given."""
    if argv[:1] == ["--remote"]:
        if len(argv) < 3:
            raise InvalidInput("usage: zdd --remote NAME COMMAND [ARGS]")
        return argv[1], argv[2:]
    first = argv[0] if argv else ""
    if first.startswith("-") or first in SERVER_ONLY or config.settings_path().exists():
        return None, argv
    return "production", argv


def _fail(message: str) -> int:
    if os.environ.get("ZDD_DEBUG"):
        traceback.print_exc()
    print(f"zdd: error: {message}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
