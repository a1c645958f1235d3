#!/bin/bash
# `docker run --entrypoint` replaces the image's entrypoint; the rest of the line is its arguments.
set -e
docker run --rm --entrypoint /bin/echo "$1" the entrypoint was replaced
