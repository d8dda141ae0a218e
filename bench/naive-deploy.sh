#!/usr/bin/env bash
# The naive deploy: stop the old container, then start the new one on the same port.
# Caddy's config never changes: it always proxies to 127.0.0.1:PORT.
#   naive-deploy.sh NAME IMAGE PORT
set -euo pipefail
name=$1 image=$2 port=$3

docker stop "$name" >/dev/null
docker rm "$name" >/dev/null
docker run -d --init --name "$name" --label zdd-bench=naive \
  -p "127.0.0.1:$port:8000" "$image" >/dev/null
echo "started $image as $name on 127.0.0.1:$port"
