"""Running mmdebstrap and other build steps with their output kept in a build log."""

from __future__ import annotations

import subprocess
from pathlib import Path

# Documentation is dead weight in hosts and images alike.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")


class BuildError(Exception):
    """A host or image could not be built; the message names it and points at the build log."""


def run_logged(argv: list[str], log: Path, what: str, env: dict[str, str] | None = None) -> None:
    """Run a build step, appending its output to `log`; raise BuildError naming `what` on failure."""
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(argv)}\n")
        fh.flush()
        result = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    if result.returncode != 0:
        raise BuildError(f"{what}: {argv[0]} failed (exit {result.returncode}); see {log}: {' | '.join(_cause(log))}")


def _cause(log: Path) -> list[str]:
    """The lines that say why: apt's and mmdebstrap's first error (a mirror out of sync, a package
    that does not exist), else the log's last lines."""
    lines = log.read_text(errors="replace").strip().splitlines()
    errors = [line for line in lines if line.startswith("E: ")]
    return errors[:1] + lines[-2:] if errors and errors[0] not in lines[-2:] else lines[-3:]


def mmdebstrap_argv(
    release: str,
    arch: str,
    packages: list[str],
    target: Path,
    mirror: str,
    variant: str = "minbase",
    hooks: dict[str, str] | None = None,
    sources: list[str] | None = None,
    aptopts: tuple[str, ...] = (),
) -> list[str]:
    """hooks: mmdebstrap hook kind (setup, extract, essential, customize) to a shell command.
    sources: apt source lines to build from instead of the release's suite in `mirror`."""
    return [
        "mmdebstrap",
        "--mode=root",
        f"--variant={variant}",
        f"--architectures={arch}",
        '--aptopt=APT::Install-Recommends "false"',
        *(f"--aptopt={option}" for option in aptopts),
        *(f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES),
        *([f"--include={','.join(packages)}"] if packages else []),
        *(f"--{kind}-hook={command}" for kind, command in (hooks or {}).items()),
        release,
        str(target),
        *(sources or [mirror]),
    ]
