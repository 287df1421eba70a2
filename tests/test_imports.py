"""Checks the dependency arrows by running real processes: the app starts without torch or
transformers in ``sys.modules``, and import-linter's contracts (pyproject) hold."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ML_STACK = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")

# Starts the real app headless on a new workspace, waits for its first snapshot, quits, and
# prints which ML modules were ever imported.
START_APP = textwrap.dedent("""
    import asyncio, sys
    from dialsum_tui.app import make_app
    from dialsum_tui.manager.workspace.layout import init_workspace

    async def main():
        app = make_app(init_workspace(sys.argv[1]), poll_interval=0.1)
        async with app.run_test(size=(80, 24)) as pilot:
            for _ in range(100):
                if "worker" in str(app.main.query_one("#status-line").render()):
                    break
                await pilot.pause(0.05)
            else:
                raise SystemExit("no snapshot reached the status line")
            await pilot.press("q")
    asyncio.run(main())
    print("LOADED", sorted(m for m in {ML} if m in sys.modules))
""").replace("{ML}", repr(set(ML_STACK)))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DIALSUM_FAKE_GPU"}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_importing_the_app_leaves_the_ml_stack_out() -> None:
    code = f"import sys, dialsum_tui.app; print(sorted(m for m in {set(ML_STACK)!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_starting_the_app_leaves_the_ml_stack_out(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", START_APP, str(tmp_path / "ws")], capture_output=True, text=True,
                            env=_env(), timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED []" in result.stdout, result.stdout


def test_import_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter)], capture_output=True, text=True, cwd=REPO, env=_env(), timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "broken" in result.stdout and "0 broken" in result.stdout
