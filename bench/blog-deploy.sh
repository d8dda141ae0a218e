#!/usr/bin/env bash
# The seed blog's blue/green deploy: two fixed ports; start the new version on the idle
# one, wait for Docker's "healthy", point the Caddyfile at it, caddy reload, stop the old.
#   blog-deploy.sh NAME IMAGE CADDYFILE ADMIN BLUE_PORT GREEN_PORT
set -euo pipefail
name=$1 image=$2 caddyfile=$3 admin=$4 blue_port=$5 green_port=$6
health_timeout=60

if [ -n "$(docker ps -q --filter "name=^$name-blue$")" ]; then
  old=blue new=green old_port=$blue_port new_port=$green_port
else
  old=green new=blue old_port=$green_port new_port=$blue_port
fi

docker rm -f "$name-$new" >/dev/null 2>&1 || true
docker run -d --init --name "$name-$new" --label zdd-bench=blog \
  -p "127.0.0.1:$new_port:8000" "$image" >/dev/null

waited=0
until [ "$(docker inspect -f '{{.State.Health.Status}}' "$name-$new")" = healthy ]; do
  if [ "$waited" -ge "$health_timeout" ]; then
    echo "blog-deploy.sh: $name-$new not healthy after ${health_timeout}s" >&2
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done

sed -i "s/reverse_proxy 127.0.0.1:$old_port\$/reverse_proxy 127.0.0.1:$new_port/" "$caddyfile"
caddy reload --config "$caddyfile" --adapter caddyfile --address "$admin"
docker stop "$name-$old" >/dev/null
docker rm "$name-$old" >/dev/null
echo "switched $name from $old (:$old_port) to $new (:$new_port), running $image"
