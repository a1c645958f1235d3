"""A VM host keeps its engine's image store across runs: a first run with a fresh store pulls the
base image and keeps the store; a second run finds it there and fetches nothing of it from the
registry, and an application image layered on it fetches its own layer only."""

from __future__ import annotations

import json
import os
import re

import pytest

from harness.cache import default_root
from harness.registry.server import registry_root
from tests.conftest import BOOKWORM_IMAGE, free_port, project_copy, run_harness, write_matrix

pytestmark = pytest.mark.vm

# A registry of this module's own: its log's window is these runs' alone, whatever else runs on
# the machine (another run on the default port would serve them from its own storage and log).
PORT = free_port()
REGISTRY_LOG = registry_root(default_root(), PORT) / "registry.log"
HOSTS = f"""version: 1
registry_port: {PORT}
hosts:
  - {{name: bookworm-amd64, release: bookworm, arch: amd64, engine: podman, runtime: crun}}
images:"""
APP = "  - {name: bookworm-python3, base: debian-bookworm, packages: [python3]}\n"


def log_size() -> int:
    return REGISTRY_LOG.stat().st_size if REGISTRY_LOG.exists() else 0


def log_since(offset: int) -> str:
    """The engines' requests in the registry's log since `offset` (the harness's own publishing
    client, Python-urllib, reads manifests back too). The registry is this module's: the window is this run's."""
    with REGISTRY_LOG.open(errors="replace") as fh:
        fh.seek(offset)
        return "".join(line for line in fh if '"containers/' in line or '"docker/' in line)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    first_dir, second_dir = tmp_path_factory.mktemp("store-first"), tmp_path_factory.mktemp("store-second")
    for directory in (first_dir, second_dir):
        project_copy(directory)
    write_matrix(first_dir, f"{HOSTS}{BOOKWORM_IMAGE}scenarios: [useradd]\n")
    write_matrix(second_dir, f"{HOSTS}{BOOKWORM_IMAGE}{APP}scenarios: [useradd]\n")
    pid = os.getpid()
    first = run_harness(first_dir, f"store-a-{pid}", "--quiet", "--no-blame", "--image-stores", "fresh")
    before_second = log_size()
    second = run_harness(second_dir, f"store-b-{pid}", "--quiet", "--no-blame")
    return [json.loads((reports / "results.json").read_text()) for _, reports in (first, second)], log_since(before_second), second[1]


def test_a_fresh_store_pulls_and_is_kept(runs):
    (first, _), _, _ = runs
    delivery = first["deliveries"]["bookworm-amd64/debian-bookworm"]
    assert delivery["ok"] and delivery["store"] == "pulled" and delivery["received_bytes"] > 20 * 2**20, delivery
    store = first["hosts"]["bookworm-amd64"]["image_store"]
    assert store.startswith("fresh: empty") and "kept: 2 image(s)" in store, store  # the health probe's and the base
    assert first["cells"]["bookworm-amd64/debian-bookworm/useradd"]["outcome"] == "pass"


def test_a_warm_run_finds_the_image_in_the_store_and_fetches_nothing_of_it(runs):
    (first, second), log, reports = runs
    delivery = second["deliveries"]["bookworm-amd64/debian-bookworm"]
    assert delivery["ok"] and delivery["store"] == "in store" and delivery["received_bytes"] == 0, delivery
    assert delivery["image_id"] == first["deliveries"]["bookworm-amd64/debian-bookworm"]["image_id"]
    assert "kept image store since" in delivery["output"] and "Copying blob" in delivery["output"]  # the first pull's evidence
    assert delivery["platform"] == "linux/amd64"
    # The registry's own log: nothing of the base image was asked for by the second run.
    assert not re.search(r'"GET /v2/harness/debian-bookworm/', log), log[-2000:]
    # The guest ran the cell in that image, and its console says the store was mounted.
    assert second["cells"]["bookworm-amd64/debian-bookworm/useradd"]["outcome"] == "pass"
    console = (reports / second["hosts"]["bookworm-amd64"]["console_log"]).read_text(errors="replace")
    assert "image store mounted at /var/lib/containers" in console
    assert second["hosts"]["bookworm-amd64"]["image_store"].startswith("warm: 2 image(s)")


def test_an_image_layered_on_a_stored_one_fetches_its_own_layer_only(runs):
    (_, second), log, _ = runs
    app = second["deliveries"]["bookworm-amd64/bookworm-python3"]
    assert app["ok"] and app["store"] == "pulled"
    base_layer = second["images"]["debian-bookworm"]["builds"]["amd64"]
    fetched = set(re.findall(r'"GET /v2/harness/bookworm-python3/blobs/(sha256:[0-9a-f]{64})', log))
    fetched -= {second["images"]["bookworm-python3"]["builds"]["amd64"]["image_id"]}  # its config
    assert len(fetched) == 1, fetched  # its own layer, not the base's
    assert base_layer["layers"] == 1 and second["cells"]["bookworm-amd64/bookworm-python3/useradd"]["outcome"] == "pass"
    assert "kept: 3 image(s)" in second["hosts"]["bookworm-amd64"]["image_store"]
