#!/bin/sh
# The official redis image's documented contract, for a local image made from Debian's
# package: `redis-server` (or options, or a .conf) is the command, run as the redis user
# in /data; anything else runs as given.
set -eu
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  chown -R redis:redis /data
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
exec "$@"
