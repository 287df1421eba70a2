"""Provides a real one-node Slurm cluster for the tests in this folder: started once per session by
``.ci/slurm-up`` (or found running), reached through ``$SLURM_CONF``.

Without Slurm installed, or without root (slurmd must start as root), the tests that need the
cluster skip and say why; the pure tests here run everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support import REPO

SLURM_UP = REPO / ".ci" / "slurm-up"
STATE_DIR = Path(os.environ.get("DIALSUM_SLURM_STATE", "/tmp/dialsum-slurm"))


@pytest.fixture(scope="session")
def slurm_cluster() -> Path:
    """The running test cluster's slurm.conf; ``$SLURM_CONF`` points at it for the whole session."""
    if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
        pytest.skip("Slurm is not installed: as root, `.ci/slurm-up` installs Debian's slurmctld, slurmd, "
                    "slurm-client and munge and starts the test cluster")
    if os.geteuid() != 0:
        pytest.skip("the test cluster needs root (slurmd switches to each job's user): run the tests as root")
    started = time.monotonic()
    done = subprocess.run([str(SLURM_UP)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DIALSUM_SLURM_STATE": str(STATE_DIR)})
    if done.returncode != 0:
        pytest.fail(f".ci/slurm-up could not start the cluster (exit {done.returncode}):\n{done.stderr}{done.stdout}")
    print(f"slurm cluster ready in {time.monotonic() - started:.1f} s: {done.stdout.strip()}")
    conf = STATE_DIR / "slurm.conf"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(conf))
        yield conf
