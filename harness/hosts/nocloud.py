"""The NoCloud seed (cloud-init's `cidata` volume) a disk-image host boots with.

It does only what the harness cannot do through the guest agent, because the agent is the
harness's one way in: start the agent, installing it first where the disk lacks it and the guest
can reach its distribution's mirror. Everything else is done through the agent afterwards
(hosts/disk.py): the delivery disk with the scenarios is mounted with the SELinux context the
guest needs, which only the running guest tells, and the engine is told which registries it may
reach. So a disk without cloud-init that already runs the agent is set up the same way.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

_AGENT = (
    "command -v qemu-ga >/dev/null || {"
    " (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-guest-agent)"
    " || dnf install -y qemu-guest-agent || zypper --non-interactive install qemu-guest-agent; };"
    " systemctl enable --now qemu-guest-agent.service"
)


def user_data() -> str:
    # JSON is YAML: written with json.dumps, nothing in it needs quoting by hand.
    config = {
        "bootcmd": [["sh", "-c", "systemctl start --no-block qemu-guest-agent.service 2>/dev/null || true"]],
        "runcmd": [["sh", "-c", _AGENT]],
    }
    return "#cloud-config\n" + json.dumps(config, indent=1) + "\n"


def make_seed(directory: Path, instance_id: str, hostname: str) -> Path:
    """An ISO 9660 volume labelled `cidata` holding user-data and meta-data (xorriso)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "user-data").write_text(user_data())
    (directory / "meta-data").write_text(json.dumps({"instance-id": instance_id, "local-hostname": hostname}) + "\n")
    seed = directory.parent / "seed.iso"
    seed.unlink(missing_ok=True)
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-output", str(seed), "-volid", "cidata", "-joliet", "-rock",
         str(directory / "user-data"), str(directory / "meta-data")],
        check=True, capture_output=True,
    )
    return seed
