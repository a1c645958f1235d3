#!/bin/bash
# usage: docker-build.sh IMAGE < Dockerfile-lines
# Builds `FROM IMAGE` plus the lines on stdin, with no network, in a scratch context; prints the
# new image's tag (as official-images' tests/docker-build.sh does for its tests).
set -e
image="$1"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
{ echo "FROM $image"; cat; } > "$context/Dockerfile"
tag="harness-suite-build:$(basename "$context" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9')"
docker build --network none --tag "$tag" "$context" > /dev/null
echo "$tag"
