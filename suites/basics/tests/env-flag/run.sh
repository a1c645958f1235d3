#!/bin/bash
# `docker run --env` reaches the process unchanged, spaces and all.
set -e
docker run --rm --env 'GREETING=hello from the host' --entrypoint /bin/sh "$1" -c 'echo "$GREETING"'
