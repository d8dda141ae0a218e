"""Where each app is reachable: its two slot ports, the route file that picks one, its host
link or Caddyfile site, and putting things right after an interrupted deploy."""

from typing import Callable

from zdd import caddy, config, names, slots, state

Emit = Callable[[str], None]

CADDYFILE_OUTCOMES = {
    "reloaded": "    Caddyfile changed: validated and reloaded",
    "took over": "    Caddyfile written by zdd from now on (the one found is kept as {path}.before-zdd): reloaded",
    "kept hand edit": "    Caddyfile was edited by hand: left as it is (zdd had nothing new to write)",
    "started": "    Caddy's container {container} started, on the overlay network {network}",
}


class HostCaddy:
    """Caddy as a service of this host, reloaded through its admin endpoint; apps route to slot ports."""

    in_overlay = False     # the template's upstreams: loopback slot ports, not Swarm tasks
    routes_by_slots = True
    names: dict = {}

    def apply(self, server, text: str, force: bool) -> str:
        return caddy.apply(server.caddy_bin, server.caddyfile, server.caddy_admin, text, force)


def refresh(server, target, emit: Emit, including: str | None = None, leaving: str | None = None,
            force: bool = False) -> str:
    """Make Caddy serve every published app (and ``including``, about to go live, but not
    ``leaving``) at its address: a host link for an app addressed by host name, a site in
    the Caddyfile for one with a port of its own. Caddy is reloaded only if the Caddyfile
    changed, which adding, removing or re-addressing a host-named app never does.
    ``target``: the Caddy to load it into (HostCaddy, or proxy.ContainerCaddy in Swarm mode)."""
    with caddy.config_lock(server.caddyfile):
        if target.routes_by_slots:
            _adopt_flag_routes(server)
        links, sites = _wanted(server, including, leaving)
        current = caddy.host_links(server.hosts_dir())
        for (scheme, host), route in links.items():
            if current.get((scheme, host)) != route:
                caddy.link_host(server.hosts_dir(), scheme, host, route)
        text = caddy.render(server.template_dir(), server.caddy_admin, sites, server.include_glob(),
                            caddy.SharedSites(str(server.hosts_dir()), server.http_port, server.https_port, server.tls),
                            swarm=target.in_overlay)
        outcome = target.apply(server, text, force)
        for scheme, host in current.keys() - links.keys():  # only once a site that replaces a link is loaded
            caddy.unlink_host(server.hosts_dir(), scheme, host)
        if including:
            _mark_published(server, including)
    if outcome in CADDYFILE_OUTCOMES:
        emit(CADDYFILE_OUTCOMES[outcome].format(path=server.caddyfile, **target.names))
    return outcome


def any_published(server) -> bool:
    return any(_published(server, app) for app in server.app_names())


def _published(server, app: str) -> bool:
    app_dir = server.app_dir(app)
    return _routable(app_dir) and ((app_dir / PUBLISHED).exists() or bool(state.read_live(app_dir)))


def _routable(app_dir) -> bool:
    """A route file, or slot ports (a live app of a zdd that routed by flag files has no route file yet)."""
    return caddy.has_route(app_dir / "route") or bool(slots.read_ports(app_dir))


def route_dir(server, app: str):
    path = server.app_dir(app) / "route"
    if not path.is_dir():
        path.mkdir(mode=0o755)
        state.own_like_parent(path)
    return path


def route_to(server, app: str, slot: str, fallback: bool = True) -> None:
    caddy.route_to(route_dir(server, app), slot_ports(server, app), slot, fallback)


def route_to_service(server, app: str, port: int) -> None:
    caddy.route_to_service(route_dir(server, app), app, port)


def slot_ports(server, app: str) -> dict[str, int]:
    """The app's two slot ports; every other app's are read only to choose them the first time
    (each switch asks: reading 50 apps' files each time would grow with the apps)."""
    return slots.read_ports(server.app_dir(app)) or slots.ensure_ports(server.app_dir(app),
                                                                       ports_of_other_apps(server, app))


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


def _wanted(server, including: str | None, leaving: str | None):
    """Host links ((scheme, host) -> route folder) and Caddyfile sites of the published apps
    (published from their first switch on)."""
    links, sites = {}, []
    for app in _serving(server, including, leaving):
        route = route_dir(server, app)
        address = config.load_app(server, app).domain
        host = names.host_route(address)
        if host:
            links[host] = route
        else:
            sites.append(caddy.Site(app, address, str(route)))
    return links, sites


def _serving(server, including: str | None, leaving: str | None) -> list[str]:
    return [app for app in server.app_names() if app != leaving and (
        _published(server, app) or app == including and _routable(server.app_dir(app)))]


def _adopt_flag_routes(server) -> None:
    """A live app set up by a zdd that routed by flag files gets the route file of its live slot."""
    for app in server.app_names():
        live = state.read_live(server.app_dir(app))
        if live and slots.read_ports(server.app_dir(app)) and not caddy.has_route(route_dir(server, app)):
            route_to(server, app, live["slot"])

