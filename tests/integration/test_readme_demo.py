"""The README's one-minute demo, run as written: a reader pastes that block into a shell
in the clone, so the block itself is what is tested, not a copy of it.

Two substitutions, no more: the demo's ports (8090, 8091) become free ones, since
other services may hold those on a test machine; and ``.venv`` (the quick start's venv,
relative to the clone) is, in the scratch directory the block runs in, a link to the
venv running this test. Everything else (the token's capture with grep and cut, the
waits, ``kill %1 %2``) runs as the README prints it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ports import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
DEMO_HEADING = "### A one-minute demo with the accrual simulator"
DEMO_PORTS = ("8090", "8091")  # the service's and the simulator's, as the README has them
#: Settings a reader's shell might carry that would change what the block does.
UNSET = ("RUN_ADDRESS", "DATABASE_URI", "ACCRUAL_SYSTEM_ADDRESS", "ACCRUAL_RUN_ADDRESS")


def demo_block(readme: str) -> str:
    """The first ```sh block after the demo's heading."""
    after = readme.split(DEMO_HEADING, 1)[1]
    found = re.search(r"^```sh\n(.*?)^```$", after, re.MULTILINE | re.DOTALL)
    assert found, f"no ```sh block under {DEMO_HEADING!r}"
    return found.group(1)


def on_free_ports(block: str) -> str:
    for port in DEMO_PORTS:
        assert f"localhost:{port}" in block, f"the demo no longer uses port {port}"
        block = block.replace(f"localhost:{port}", f"localhost:{free_port()}")
    return block


@pytest.mark.slow
def test_the_readme_demo_runs_as_written(tmp_path: Path) -> None:
    venv_command = Path(sys.prefix) / "bin" / "gophermart"
    assert venv_command.is_file(), (
        f"this test runs from a venv with gophermart installed: {sys.prefix}"
    )
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    script = on_free_ports(demo_block(README.read_text(encoding="utf-8")))
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the block's background jobs too: one group to stop
    )
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the block's own `kill` may not have run
            os.killpg(proc.pid, signal.SIGKILL)
    # What the README's comments promise, in the order it prints them. The simulator's
    # access lines land in the same stdout (it is the block's background job): search.
    upload = re.search(r"^202$", out, re.MULTILINE)
    orders = re.search(r'\{"number":"9278923470","status":"PROCESSED",[^}]*"accrual":729.78\b', out)
    balance = out.find('{"current":729.78,"withdrawn":0,"held":0,"owed":0}')
    assert upload and orders and balance >= 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert upload.start() < orders.start() < balance, out
