"""Host-side scenarios (`mode: host`, and every suite test): the script runs on the host itself and
drives the engine through a docker-compatible CLI, as docker-library/official-images' `run.sh IMAGE`
tests do. What the harness owes such a script: the image in the engine's store under the name the
suite expects, that name in $IMAGE and $1, `docker` on PATH, and afterwards nothing left of what
the test ran or built.

The steps run in the guest as one script on the delivery disk (one agent call, not a dozen; each
costs a second under emulation), so a cell's recorded command stays short and readable.
"""

from __future__ import annotations

import shlex

from harness.config.model import ScenarioSpec

SCRIPT = "harness/host-side"  # its path on the delivery disk
STATE = "/run/harness-host-side"  # per cell: what existed before the test, for the cleanup
# `run STATE IMAGE ID SCRIPT`: tag, note what exists, run the test in a scratch directory, clean up.
# `clean STATE`: the cleanup alone (after a timeout, which killed the script but not its containers).
# A tag that fails exits 125: the engine's trouble, never the image's.
TEXT = r"""#!/bin/sh
export PATH="${PATH:+$PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME="${HOME:-/root}"
if ! command -v docker >/dev/null 2>&1 && command -v podman >/dev/null 2>&1; then
    # bullseye's podman has no podman-docker: this stands in, as podman-docker's own script does
    mkdir -p /run/harness-bin && printf '#!/bin/sh\nexec podman "$@"\n' > /run/harness-bin/docker && chmod +x /run/harness-bin/docker
    PATH="/run/harness-bin:$PATH"
fi
names() { docker images --format '{{.Repository}}:{{.Tag}}' | grep -v '<none>' | sort -u; }
clean() {
    state="$1"
    [ -d "$state" ] || return 0
    docker ps -aq --no-trunc | sort | comm -13 "$state/containers" - | xargs -r docker rm -f >/dev/null 2>&1
    names | comm -13 "$state/names" - | xargs -r docker rmi >/dev/null 2>&1
    docker images -q --no-trunc | sort -u | comm -13 "$state/images" - | xargs -r docker rmi -f >/dev/null 2>&1
    rm -rf "$state"
}
case "$1" in
clean) clean "$2"; exit 0 ;;
run) state="$2" image="$3" id="$4" script="$5" ;;
*) echo "usage: host-side run STATE IMAGE ID SCRIPT | clean STATE" >&2; exit 2 ;;
esac
docker tag "$id" "$image" >/dev/null || { echo "host-side: the engine could not tag $id as $image" >&2; exit 125; }
mkdir -p "$state/work"
docker ps -aq --no-trunc | sort > "$state/containers"
docker images -q --no-trunc | sort -u > "$state/images"
names > "$state/names"
cd "$state/work" && IMAGE="$image" "$script" "$image"
status=$?
cd / && clean "$state"
exit $status
"""


def image_name(scenario: ScenarioSpec, image: str) -> str:
    """The repo:tag a host-side scenario finds the cell's image under."""
    return scenario.image_as.format(image=image)


def run_argv(payload_root: str, scenario: ScenarioSpec, cell: str, image_id: str) -> list[str]:
    return ["sh", f"{payload_root}/{SCRIPT}", "run", f"{STATE}/{cell}", scenario.image_as, image_id, f"{payload_root}/{scenario.payload_script}"]


def clean_argv(payload_root: str, cell: str) -> list[str]:
    return ["sh", f"{payload_root}/{SCRIPT}", "clean", f"{STATE}/{cell}"]


def by_hand(payload_root: str, scenario: ScenarioSpec, image_id: str) -> list[str]:
    """What a person runs on the host to repeat the cell (the cleanup is theirs)."""
    name = shlex.quote(scenario.image_as)
    return [f"docker tag {image_id} {name}", f"IMAGE={name} {payload_root}/{scenario.payload_script} {name}"]
