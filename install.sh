#!/usr/bin/env bash
# Set up zdd on this server and an app in it:
#   ./install.sh APP --domain ADDRESS [--port PORT] [--branch BRANCH]
# Settings come from the environment (defaults shown) and are recorded, so the hook
# and the zdd command need no environment later:
#   ZDD_ROOT=/srv/zdd  ZDD_CADDYFILE=/etc/caddy/Caddyfile  ZDD_CADDY_ADMIN=localhost:2019
# Re-running it with the same arguments changes nothing.
set -euo pipefail

die() { echo "install.sh: error: $*" >&2; exit 2; }
usage() { echo "usage: $0 APP --domain ADDRESS [--port PORT] [--branch BRANCH]" >&2; exit 2; }

SRC=$(cd "$(dirname "$0")" && pwd)
APP="" DOMAIN="" PORT="" BRANCH="main"
[ $# -ge 1 ] || usage
APP=$1; shift
while [ $# -gt 0 ]; do
  case "$1" in
    --domain) [ $# -ge 2 ] || usage; DOMAIN=$2; shift 2 ;;
    --port) [ $# -ge 2 ] || usage; PORT=$2; shift 2 ;;
    --branch) [ $# -ge 2 ] || usage; BRANCH=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$DOMAIN" ] || die "--domain is required (e.g. --domain myapp.example.com, or --domain :8080)"

ZDD_ROOT=${ZDD_ROOT:-/srv/zdd}
ZDD_CADDYFILE=${ZDD_CADDYFILE:-/etc/caddy/Caddyfile}
ZDD_CADDY_ADMIN=${ZDD_CADDY_ADMIN:-localhost:2019}
path_ok='^/[A-Za-z0-9._/-]+$'
[[ $ZDD_ROOT =~ $path_ok ]] || die "ZDD_ROOT must be an absolute path of letters, digits and ._/- (got '$ZDD_ROOT')"
[[ $ZDD_CADDYFILE =~ $path_ok ]] || die "ZDD_CADDYFILE must be an absolute path of letters, digits and ._/-"

command -v python3 >/dev/null || die "python3 is missing: apt-get install -y python3 python3-venv"
command -v git >/dev/null || die "git is missing: apt-get install -y git"
CADDY_BIN=$(command -v caddy) || die "caddy is missing: apt-get install -y caddy"
# Refuse bad input before anything is written (stdlib-only check from the checkout).
PYTHONPATH="$SRC" python3 -m zdd.names "$APP" "$DOMAIN" "$PORT" || exit 2

VENV=$ZDD_ROOT/venv
mkdir -p "$ZDD_ROOT/bin" "$ZDD_ROOT/templates"
fingerprint=$(cd "$SRC" && cat setup.cfg pyproject.toml zdd/*.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.zdd-source" 2>/dev/null)" != "$fingerprint" ]; then
  echo "installing zdd into $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SRC"
  echo "$fingerprint" > "$VENV/.zdd-source"
fi

cmp -s "$SRC/templates/Caddyfile.j2" "$ZDD_ROOT/templates/Caddyfile.j2" ||
  install -m 0644 "$SRC/templates/Caddyfile.j2" "$ZDD_ROOT/templates/Caddyfile.j2"

wrapper=$(cat <<WRAPPER
#!/bin/sh
# zdd for this server: its settings live in $ZDD_ROOT/settings.json.
ZDD_ROOT='$ZDD_ROOT'; export ZDD_ROOT
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

"$ZDD_ROOT/bin/zdd" init "$APP" --domain "$DOMAIN" ${PORT:+--port "$PORT"} --branch "$BRANCH" \
  --caddyfile "$ZDD_CADDYFILE" --caddy-admin "$ZDD_CADDY_ADMIN" --caddy-bin "$CADDY_BIN" \
  --templates "$ZDD_ROOT/templates" --hook-template "$SRC/hooks/post-receive"

echo "$APP is ready. From your laptop:"
echo "  git remote add production ssh://$(id -un)@$(hostname -f 2>/dev/null || hostname)$ZDD_ROOT/$APP.git"
echo "  git push production $BRANCH"
