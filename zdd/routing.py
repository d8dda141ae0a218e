"""Where each app is reachable: its two slot ports, the flag that picks one, the sites
in the Caddyfile, and putting things right after an interrupted deploy."""

from typing import Callable

from zdd import caddy, config, recover, slots, state

Emit = Callable[[str], None]

CADDYFILE_OUTCOMES = {
    "reloaded": "    Caddyfile changed: validated and reloaded",
    "took over": "    Caddyfile written by zdd from now on (the one found is kept as {path}.before-zdd): reloaded",
    "kept hand edit": "    Caddyfile was edited by hand: left as it is (zdd had nothing new to write)",
}


def refresh_caddyfile(server, emit: Emit, including: str | None = None, leaving: str | None = None,
                      force: bool = False) -> str:
    """Render the site of every published app (and of ``including``, about to go live, but
    not of ``leaving``); validate and reload only if that changed the Caddyfile."""
    with caddy.config_lock(server.caddyfile):
        sites = [site for site in _sites(server, including) if site.app != leaving]
        text = caddy.render(server.template_dir(), server.caddy_admin, sites, server.include_glob())
        outcome = caddy.apply(server.caddy_bin, server.caddyfile, server.caddy_admin, text, force)
        if including:
            _mark_published(server, including)
    if outcome in CADDYFILE_OUTCOMES:
        emit(CADDYFILE_OUTCOMES[outcome].format(path=server.caddyfile))
    return outcome


def flag_dir(server, app: str):
    path = server.app_dir(app) / "route"
    if not path.is_dir():
        path.mkdir(mode=0o755)
        state.own_like_parent(path)
    return path


def slot_ports(server, app: str) -> dict[str, int]:
    return slots.ensure_ports(server.app_dir(app), ports_of_other_apps(server, app))


def ports_of_other_apps(server, app: str) -> set[int]:
    taken = set()
    for other in server.app_names():
        if other != app:
            taken |= set((slots.read_ports(server.app_dir(other)) or {}).values())
    return taken


PUBLISHED = "published"


def _mark_published(server, app: str) -> None:
    """The app's site is in the Caddyfile now: a deploy of another app must keep it there
    even before this app's deploy has recorded itself as live."""
    marker = server.app_dir(app) / PUBLISHED
    if not marker.exists():
        marker.write_text("this app's site is in the Caddyfile\n")
        state.own_like_parent(marker)


def _sites(server, including: str | None) -> list[caddy.Site]:
    """Published apps' sites. They do not depend on which slot is live, only on the slots' ports."""
    sites = []
    for app in server.app_names():
        app_dir = server.app_dir(app)
        ports = slots.read_ports(app_dir)
        if ports and (app == including or (app_dir / PUBLISHED).exists() or state.read_live(app_dir)):
            sites.append(caddy.Site(app, config.load_app(server, app).domain, str(flag_dir(server, app)), ports))
    return sites


def reconcile(server, client, app: str, emit: Emit) -> dict | None:
    return recover.reconcile(server.app_dir(app), flag_dir(server, app), slot_ports(server, app), client, app, emit)


