"""Provides what every engine command shares: device and capabilities, clean SIGINT/SIGTERM stops,
and the wrapper that turns a command body into events plus an exit status (``contract.ExitCode``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from engine.artifacts import EventWriter, process_rank, world_size
from engine.config import ConfigError, RunConfig
from engine.contract import Event, ExitCode, FailureKind, RunFiles
from engine.failures import classify_exception


@dataclass(frozen=True)
class Capabilities:
    """What the hardware can do, as plain values (filled from torch by the engine)."""

    cuda: bool
    bf16: bool
    device_name: str = "cpu"


def check_runtime(cfg: RunConfig, caps: Capabilities, source: str = "config") -> None:
    """Raise :class:`ConfigError` for combinations the current hardware cannot run."""
    on_gpu = caps.cuda and cfg.train.device != "cpu"
    if cfg.train.device == "cuda" and not caps.cuda:
        raise ConfigError(f"{source}: train.device: cuda requested but no CUDA GPU is visible; use auto or cpu")
    if cfg.quantization.load_in_4bit and not on_gpu:
        raise ConfigError(f"{source}: quantization.load_in_4bit: 4-bit needs a CUDA GPU and none is in use; set it to false")
    wants_bf16 = cfg.train.precision == "bf16" or cfg.model.dtype == "bfloat16"
    if wants_bf16 and on_gpu and not caps.bf16:
        raise ConfigError(
            f"{source}: train.precision/model.dtype: {caps.device_name} has no bf16 support; use fp32 weights with fp16 AMP"
        )
    if cfg.train.use_liger_kernel and not on_gpu:
        raise ConfigError(f"{source}: train.use_liger_kernel: Liger's Triton kernels need a CUDA GPU; set it to false on CPU")
    if cfg.train.precision == "fp16" and not on_gpu:
        raise ConfigError(f"{source}: train.precision: fp16 AMP needs a CUDA GPU; use fp32 or bf16 on CPU")


class Interrupted(Exception):
    """Raised at a safe point after SIGINT/SIGTERM asked the command to stop."""


class DiskQuotaReached(Exception):
    """Raised after the disk guard stopped training; the message says usage and quota."""


# The signal received, if any. A module-level flag (not a closure) because a signal handler can only
# reach global state, and the Trainer callback polls it at each step boundary.
_stop_signal: str | None = None


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    global _stop_signal
    name = signal.Signals(signum).name
    if _stop_signal is not None:
        # A second signal means "now": give up on the clean stop.
        raise KeyboardInterrupt(f"received {name} twice")
    _stop_signal = name
    print(f"received {name}: stopping at the next step boundary (send again to stop at once)", file=sys.stderr, flush=True)


def install_signal_handlers() -> None:
    """Turn SIGINT/SIGTERM/SIGHUP into a flag polled at step boundaries (see :func:`stop_requested`).

    SIGHUP is a closed terminal or a dropped SSH session of a stage started by hand: a clean stop
    (with a checkpoint to resume, ``train.save_on_stop``) instead of a lost run.
    """
    global _stop_signal
    _stop_signal = None
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)


def stop_requested() -> str | None:
    """Return the name of the stop signal received (``"SIGINT"``/``"SIGTERM"``), or None."""
    return _stop_signal


def stop_from_other_rank() -> None:
    """Record that another rank of a distributed run received the stop signal (see
    :func:`engine.callbacks.any_rank`): every rank then stops at the same step and reports interrupted."""
    global _stop_signal
    if _stop_signal is None:
        _stop_signal = "a stop signal on another rank"


class _RankPrefixed:
    """A text stream that starts every line with ``[rankN]``: in a distributed run all ranks share
    ``run.log``, and a traceback must say which rank it came from."""

    def __init__(self, stream: Any, rank: int):
        self._stream = stream
        self._prefix = f"[rank{rank}] "
        self._at_line_start = True

    def write(self, text: str) -> int:
        out = []
        for piece in text.splitlines(keepends=True):
            if self._at_line_start:
                out.append(self._prefix)
            out.append(piece)
            self._at_line_start = piece.endswith("\n")
        self._stream.write("".join(out))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding...
        return getattr(self._stream, name)


# Deprecation notices the libraries raise about their own internals (PEFT and TRL read transformers'
# old ``is_gradient_checkpointing``) or about a choice with no alternative here (TRL points Liger
# users at Hub kernels, which need hub access). No user can act on them, yet each landed in every
# run's run.log and so in the TUI's log pane.
LIBRARY_NOISE = (
    r"`is_gradient_checkpointing` is deprecated",
    r"`use_liger_kernel=True` is deprecated",
)


def quiet_library_noise() -> None:
    """Drop the :data:`LIBRARY_NOISE` warnings in this process (every other warning still shows)."""
    for message in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)


def prefix_stderr_with_rank() -> None:
    """In a distributed launch, prefix this process's stderr lines with its rank (no-op otherwise)."""
    if world_size() > 1 and not isinstance(sys.stderr, _RankPrefixed):
        sys.stderr = _RankPrefixed(sys.stderr, process_rank())


def bind_local_device(device: str) -> None:
    """Make ``cuda`` mean this rank's own GPU (``LOCAL_RANK``) so loading never lands every rank on GPU 0."""
    if device != "cuda" or world_size() <= 1:
        return
    import torch

    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def raise_if_stopped() -> None:
    """Raise :class:`Interrupted` if a stop signal arrived; call it between units of work."""
    if _stop_signal is not None:
        raise Interrupted(f"received {_stop_signal}")


def capabilities() -> Capabilities:
    """Read what the hardware can do (imports torch)."""
    import torch

    if torch.cuda.is_available():
        return Capabilities(cuda=True, bf16=torch.cuda.is_bf16_supported(), device_name=torch.cuda.get_device_name(0))
    return Capabilities(cuda=False, bf16=True, device_name="cpu")


def resolve_device(cfg: RunConfig, source: str) -> str:
    """Check the config against the hardware and return ``"cuda"`` or ``"cpu"``.

    Raises:
        ConfigError: the config asks for something this machine cannot do.
    """
    caps = capabilities()
    check_runtime(cfg, caps, source)
    return "cuda" if caps.cuda and cfg.train.device != "cpu" else "cpu"


def configure_cuda_kernels() -> None:
    """Process-wide kernel choices for CUDA, measured on an H100 (docs/benchmarks.md).

    cuDNN's SDPA backend plans a new graph for every new sequence length; with length-grouped
    batches that is nearly every step, and the planning cost ~5 ms of CPU per attention call
    (profiled: a third of each 3B LoRA step). PyTorch's own flash / memory-efficient kernels need
    no planning, so cuDNN attention is switched off.
    """
    import torch

    if torch.cuda.is_available():
        torch.backends.cuda.enable_cudnn_sdp(False)
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (LoRA-free seq2seq in fp32) on tensor cores


def torch_dtype(name: str):  # -> torch.dtype
    """Map a config dtype name (``bfloat16``) to the torch dtype."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _data_error_type() -> type[Exception]:
    from engine.data import DataError

    return DataError


def run_command(
    command: str, args: argparse.Namespace, body: Callable[[argparse.Namespace, EventWriter], dict[str, Any] | None]
) -> int:
    """Run ``body`` with events on ``<run-dir>/events.jsonl`` and map its outcome to an exit status.

    ``body`` emits ``started``/``phase``/... itself and returns its metrics on success; this wrapper
    emits ``finished`` or ``failed`` (kind, message, hint) and prints tracebacks to stderr, which the
    manager captures into ``run.log``.

    Args:
        command: the event's ``command`` field (``train``, ``infer``).
        args: parsed CLI arguments; ``args.run_dir`` is required.
        body: the command itself.

    Returns:
        an :class:`~engine.contract.ExitCode`: OK, BAD_INPUT for config/data errors, INTERRUPTED
        when stopped by a signal, ERROR otherwise.
    """
    install_signal_handlers()
    prefix_stderr_with_rank()
    quiet_library_noise()
    events = EventWriter(RunFiles(Path(args.run_dir)).events, command=command)
    start = time.monotonic()
    data_error = _data_error_type()
    try:
        metrics = body(args, events)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return _failed(events, FailureKind.CONFIG, str(exc), ExitCode.BAD_INPUT)
    except data_error as exc:
        print(f"data error: {exc}", file=sys.stderr)
        return _failed(events, FailureKind.DATA, str(exc), ExitCode.BAD_INPUT)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return _failed(events, FailureKind.INTERRUPTED, f"interrupted ({exc or 'SIGINT'})", ExitCode.INTERRUPTED)
    except DiskQuotaReached as exc:
        print(f"disk quota guard: {exc}", file=sys.stderr)
        return _failed(events, FailureKind.DISK, str(exc), ExitCode.ERROR)
    except Exception as exc:  # every other failure is classified, never swallowed
        traceback.print_exc(file=sys.stderr)
        failure = classify_exception(exc)
        return _failed(events, failure.kind, failure.message, ExitCode.ERROR)
    finally:
        leave_process_group()
        sys.stderr.flush()
    events.emit(Event.FINISHED, seconds=round(time.monotonic() - start, 2), metrics=metrics or {}, pid=os.getpid())
    events.close()
    return ExitCode.OK


def leave_process_group() -> None:
    """End this rank's part of a multi-rank run before the interpreter exits.

    A rank that exits with its process group still up tears down the group's C++ threads in the
    interpreter's shutdown: seen on CPU ranks as ``terminate called without an active exception``
    (SIGABRT, exit -6) in the rank that finished first while rank 0 was still saving, which made
    ``accelerate launch`` report the whole run failed. Local to this rank: no barrier, so a rank
    whose peer died does not hang here.
    """
    if "torch" not in sys.modules:  # evaluate and single-process commands never started a group
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _failed(events: EventWriter, kind: FailureKind, message: str, code: ExitCode) -> int:
    """Record the failure (with its kind's one hint) and return the exit status."""
    events.emit(Event.FAILED, kind=kind, message=message, hint=kind.hint)
    return code
