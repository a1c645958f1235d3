#!/bin/bash
# `docker build` FROM the image under test with no network: the image must be usable as a base
# as it is (its shell runs RUN; nothing is fetched).
set -e
dir="$(dirname "$BASH_SOURCE")"
tag="$("$dir/../docker-build.sh" "$1" <<'DOCKERFILE'
RUN echo 'built offline' > /built-offline
CMD ["cat", "/built-offline"]
DOCKERFILE
)"
trap 'docker rmi "$tag" > /dev/null' EXIT
docker run --rm "$tag"
