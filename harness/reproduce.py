"""`harness reproduce HOST/IMAGE/SCENARIO`: one cell by hand, as the run did it, or with one layer
swapped (`--swap seccomp=unconfined`), printing its evidence and the commands that ran it; then,
with `--shell`, a shell on the host with the image already there.

The shell goes through the guest agent, which every VM host has (no guest network, no login, any
hypervisor, local or remote): each line runs in the guest as `sh -c`, in the directory the last
one ended in. It carries no terminal (no editors, no job control, no `podman run -t`); a command
is stopped after the host's cell timeout. The host is torn down when the shell ends (`exit` or
end of input)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TextIO

from harness.cells.blame import ROOTLESS, Swap
from harness.cells.runner import CellSettings
from harness.cells.verdict import judge
from harness.config.model import Matrix
from harness.context import RunContext
from harness.hosts.provider import Host, HostError
from harness.registry.server import RegistryError
from harness.results.model import Layer
from harness.runs import claim
from harness.session import RunSession, run_registry
from harness.supply import SupplyError, delivery_problem

# What --swap takes: the blame experiments' swaps, by the name the engine's flag has.
SWAPS = {
    "seccomp=unconfined": Swap(Layer.SECCOMP, "seccomp=unconfined", ("seccomp=unconfined",)),
    "apparmor=unconfined": Swap(Layer.LSM, "apparmor=unconfined", ("apparmor=unconfined",)),
    "label=disable": Swap(Layer.LSM, "label=disable", ("label=disable",)),
    "runtime=crun": Swap(Layer.RUNTIME, "runtime crun", runtime="crun"),
    "runtime=runc": Swap(Layer.RUNTIME, "runtime runc", runtime="runc"),
    "rootless": ROOTLESS,
}


# Runs one line of the shell in the directory the last one ended in, and says where it ended.
_LINE = 'cd "$1" 2>/dev/null; eval "$2"; rc=$?; echo; echo "{mark}$PWD"; exit $rc'
_MARK = "harness-shell-cwd="


def _shell(host: Host, image_id: str, command: list[str], lines: TextIO, out: TextIO) -> None:
    """Lines read from `lines` run on the host until `exit` or the end of input."""
    print(f"shell on host {host.name} through its guest agent (no terminal; `exit` or end of input ends it and tears the host down)", file=out)
    print(f"the image is there as {image_id}; the cell ran as: {' '.join(command)}", file=out)
    cwd = "/"
    while True:
        out.write(f"{host.name}:{cwd}# ")
        out.flush()
        line = lines.readline()
        if not line or line.strip() in ("exit", "logout"):
            out.write("\n")
            return
        if not line.strip():
            continue
        done = host.run(["sh", "-c", _LINE.format(mark=_MARK), "shell", cwd, line], host.cell_timeout)
        said, _, where = done.stdout.rpartition(_MARK)
        cwd = where.strip() or cwd
        out.write(said.removesuffix("\n") + done.stderr)
        if done.timed_out:
            print(f"[stopped after {host.cell_timeout:.0f}s]", file=out)
        elif done.exit_code:
            print(f"[exit {done.exit_code}]", file=out)


class ReproduceError(Exception):
    """The cell could not be run (its host, image or registry); str() says why in one line."""


def reproduce(matrix: Matrix, cell: str, cache_root: Path, out: TextIO, swap: str | None = None, shell: TextIO | None = None) -> int:
    """Run the cell; print what happened; then a shell reading `shell`, if given. Returns 0 when
    the cell passed, 1 when it did not."""
    host_name, image, scenario_name = cell.split("/")
    if swap is not None and matrix.scenario(scenario_name).mode == "host":
        raise ReproduceError(f"scenario {scenario_name} runs on the host and starts its own containers: no swap reaches them")
    run_id = f"reproduce-{uuid.uuid4().hex[:8]}"
    pool = matrix.pool()
    registry = run_registry(matrix, cache_root, pool)
    try:
        url = registry.start() if registry else None
    except RegistryError as exc:
        raise ReproduceError(str(exc)) from None
    run = RunContext(run_id, cache_root, cache_root / "runs" / run_id / "reports", pool, registry=url)
    claim(run.workdir)
    session = RunSession(matrix, run)
    session.select([(host_name, image, scenario_name)])
    scenario = matrix.scenario(scenario_name)
    try:
        host = session.fleet.host(host_name)
        delivery = session.supply.deliver(host, image)
        if not delivery.ok:
            raise ReproduceError(delivery_problem(delivery, host_name))
        print(f"host {host_name}: {host.record.facts.os}, kernel {host.record.facts.kernel}, {host.record.facts.engine} {host.record.facts.engine_version}", file=out)
        print(f"image {image}: {delivery.store or delivery.method.label} ({' '.join(delivery.command)}), {delivery.image_id}", file=out)
        if swap is None:
            result = session.runner.run(host, delivery, scenario, CellSettings.of(matrix))
            outcome, message, command, code, stdout, stderr = result.outcome, result.message, result.command, result.exit_code, result.stdout, result.stderr
        else:
            if SWAPS[swap].rootless:
                if not host.allows_rootless():
                    raise ReproduceError(f"host {host_name} has no unprivileged user for a rootless run (podman hosts the harness builds have one)")
                if (stored := host.rootless_store(delivery, host.delivery_timeout)).exit_code != 0:
                    raise ReproduceError(f"host {host_name}: the image could not be put into the unprivileged user's store: {(stored.stdout + stored.stderr).strip()[-500:]}")
            execution = host.run_scenario(delivery.image_id, SWAPS[swap].apply(scenario), host.timeout_for(scenario))
            (outcome, message), command, code, stdout, stderr = judge(execution), execution.argv, execution.exit_code, execution.stdout, execution.stderr
        print(f"command: {' '.join(command)}", file=out)
        print(f"--- stdout ---\n{stdout}--- stderr ---\n{stderr}--- exit {code}: {outcome}{': ' + message if message else ''}", file=out)
        if shell is not None:
            _shell(host, delivery.image_id, command, shell, out)
        return 0 if outcome.passed else 1
    except (HostError, SupplyError) as exc:
        raise ReproduceError(str(exc)) from None
    finally:
        session.close()
        if registry is not None:
            registry.stop()  # only if this process started it
