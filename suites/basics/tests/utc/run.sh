#!/bin/bash
# The image's clock is UTC unless told otherwise (official-images' own "utc" test).
set -e
docker run --rm --entrypoint date "$1" +%Z
