"""An engine host's service scenario whose init dies while the scenario is being executed in it
(seen in CI: podman's API service answered the exec with 125, "cannot exec in a stopped
container"): the scenario never ran, and the init's exit status is the finding, not the engine's."""

from pathlib import Path

from harness.config.model import ScenarioSpec
from harness.hosts.engine import EngineHost

SERVICE = ScenarioSpec("svc", Path("svc"), Path("svc/run"), "p", None, mode="service", init=("/bin/sh", "-c", "exit 3"))


class StoppedDuringExec:
    """A container whose init exited (status 3) before the exec could start in it."""

    status = "exited"
    attrs = {"State": {"Status": "exited", "ExitCode": 3}}

    def exec_run(self, command, demux):
        return 125, (None, b"Error: runc: exec failed: cannot exec in a stopped container: OCI runtime error\n")

    def reload(self):
        pass

    def logs(self, tail=None):
        return b"init dying\n"


def test_an_init_that_died_under_the_exec_is_the_container_exit_not_an_engine_error():
    result = EngineHost._exec_in(EngineHost, StoppedDuringExec(), SERVICE, ["docker", "run"], 10.0, 0.0)
    assert result.container_exit == 3 and result.stdout == "init dying\n", result
