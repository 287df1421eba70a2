"""benchmarks/resume.py on the CPU with the tiny Llama (its ``--tiny`` code path): SFTTrainer + PEFT
LoRA stopped by SIGINT resumes its adapter and optimizer state and ends at step N, its first loss
after the resume the one the uninterrupted run had at that step."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

STEPS, STOP_AT = 6, 3


@pytest.mark.slow  # three tiny trainings in their own processes (~1 min on a shared CPU)
def test_resume_benchmark_runs_its_code_path_on_cpu(tmp_path: Path, synth_data_dir: Path, tiny_llama_dir: Path) -> None:
    shutil.copytree(synth_data_dir, tmp_path / "data")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "resume.py"), "--root", str(tmp_path), "--tiny",
                           "--model", str(tiny_llama_dir), "--steps", str(STEPS), "--stop-at", str(STOP_AT)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[0])
    k = result["resumed_from_step"]
    assert result["stopped_exit"] == 130 and STOP_AT <= k < STEPS
    assert result["resumed_trained_steps"] == STEPS - k and result["resumed_last_step"] == STEPS
    # The Trainer's own resume (adapter, optimizer, scheduler, RNG, data position): the step after the
    # stop sees the same batch and weights as in the run that never stopped.
    assert result["loss_after_resume"] == pytest.approx(result["full_loss_at_next"], rel=1e-3)
    assert "lost: stop" in done.stdout
