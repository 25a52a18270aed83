"""Drive MACE's own command-line tools (mace-torch 0.3.x) for a same-budget comparison.

MACE has no time budget. :class:`MaceRun` starts ``mace_run_train`` with a large
``--max_num_epochs``, reads its log, and stops it with SIGTERM at the end of the first epoch
that ends after the deadline (the rule ``tensorpot``'s ``time_budget_minutes`` follows).
MACE keeps one checkpoint, the best validation model (EMA weights), named
``<name>_run-<seed>_epoch-<N>.pt``. :meth:`MaceRun.export_best` reruns ``mace_run_train`` with
``--restart_latest --max_num_epochs N``: it loads that checkpoint, trains no further, and writes
``<name>.model`` plus its own error table on the training and validation sets.
:func:`predict` runs ``mace_eval_configs`` and returns the predicted energies and forces.

Every child gets one thread (``OMP_NUM_THREADS=1``). Nothing of MACE is imported here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase.io
import numpy as np

from mace_tensorial import error_table, hidden_irreps, parse_log, thread_env


def one_thread_env() -> dict[str, str]:
    return thread_env(1)


def executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found: pip install -c constraints.txt -e '.[bench]'")
    return path


@dataclass(frozen=True)
class MaceSettings:
    """The MACE run: data, size and the optimisation settings (MACE's flag names)."""

    train_file: Path
    valid_file: Path
    e0s: dict[int, float]
    channels: int
    max_L: int = 2
    max_ell: int = 3
    correlation: int = 3
    r_max: float = 5.0
    num_interactions: int = 2
    batch_size: int = 5
    valid_batch_size: int = 10
    lr: float = 0.01
    energy_weight: float = 1.0
    forces_weight: float = 10.0
    ema_decay: float = 0.99
    weight_decay: float = 5e-7
    scheduler_patience: int = 50
    lr_factor: float = 0.8
    clip_grad: float | None = None
    seed: int = 1
    max_num_epochs: int = 2000

    @property
    def hidden_irreps(self) -> str:
        """``Cx0e+Cx1o+Cx2e`` for max_L 2: C channels of every rank up to max_L."""
        return hidden_irreps(self.channels, self.max_L)

    def e0s_text(self) -> str:
        return "{" + ", ".join(f"{z}: {e!r}" for z, e in sorted(self.e0s.items())) + "}"

    @classmethod
    def from_preset(
        cls, preset: Any, train_file: Path, valid_file: Path, channels: int, seed: int
    ) -> MaceSettings:
        """MACE's settings matching a tensorpot run config (its size, E0s and optimisation)."""
        return cls(
            train_file=train_file,
            valid_file=valid_file,
            e0s={int(k): float(v) for k, v in preset.E0s.items()},
            channels=channels,
            max_L=preset.model["max_L"],
            max_ell=preset.model["max_ell"],
            correlation=preset.model["correlation"],
            r_max=preset.model["r_max"],
            batch_size=preset.batch_size,
            valid_batch_size=preset.valid_batch_size,
            lr=preset.lr,
            energy_weight=preset.energy_weight,
            forces_weight=preset.forces_weight,
            ema_decay=preset.ema_decay,
            weight_decay=preset.weight_decay,
            scheduler_patience=preset.scheduler_patience,
            lr_factor=preset.lr_factor,
            clip_grad=preset.clip_grad,
            seed=seed,
            max_num_epochs=preset.max_num_epochs,
        )


class MaceRun:
    """One ``mace_run_train`` run in ``folder`` (checkpoints, model, logs all below it)."""

    name = "mace"

    def __init__(self, settings: MaceSettings, folder: Path):
        self.settings = settings
        self.folder = folder
        self.stdout_path = folder / "mace_train.out"
        self.proc: subprocess.Popen | None = None
        self.launch = 0.0
        self.stopped_at: float | None = None
        self.cpu_seconds: float | None = None
        self.return_code: int | None = None

    @property
    def checkpoints_dir(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def model_path(self) -> Path:
        return self.folder / "model" / f"{self.name}.model"

    def args(self, max_num_epochs: int) -> list[str]:
        s = self.settings
        return [
            executable("mace_run_train"),
            f"--name={self.name}",
            f"--seed={s.seed}",
            f"--work_dir={self.folder}",
            f"--checkpoints_dir={self.checkpoints_dir}",
            f"--model_dir={self.folder / 'model'}",
            f"--results_dir={self.folder / 'results'}",
            f"--train_file={s.train_file}",
            f"--valid_file={s.valid_file}",
            "--energy_key=energy",
            "--forces_key=forces",
            f"--E0s={s.e0s_text()}",
            "--model=ScaleShiftMACE",
            f"--hidden_irreps={s.hidden_irreps}",
            f"--max_ell={s.max_ell}",
            f"--correlation={s.correlation}",
            f"--r_max={s.r_max}",
            f"--num_interactions={s.num_interactions}",
            "--default_dtype=float64",
            f"--batch_size={s.batch_size}",
            f"--valid_batch_size={s.valid_batch_size}",
            f"--lr={s.lr}",
            "--loss=weighted",
            f"--energy_weight={s.energy_weight}",
            f"--forces_weight={s.forces_weight}",
            "--ema",
            f"--ema_decay={s.ema_decay}",
            f"--weight_decay={s.weight_decay}",
            "--scheduler=ReduceLROnPlateau",
            f"--scheduler_patience={s.scheduler_patience}",
            f"--lr_factor={s.lr_factor}",
            f"--clip_grad={s.clip_grad}",
            f"--max_num_epochs={max_num_epochs}",
            "--patience=1000000",
            "--eval_interval=1",
            "--error_table=TotalRMSE",
            "--device=cpu",
            "--save_cpu",
            "--plot=False",
            "--pin_memory=False",
            "--num_workers=0",
        ]

    def env(self) -> dict[str, str]:
        """The training process's environment: one thread."""
        return one_thread_env()

    def start(self, launch: float) -> None:
        """Start training; ``launch`` (``time.time()``) is the common start of the budget."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.launch = launch
        with open(self.stdout_path, "w", encoding="utf-8") as out:
            self.proc = subprocess.Popen(
                self.args(self.settings.max_num_epochs),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.folder,
            )

    def epochs_logged(self) -> list[tuple[int, float]]:
        """``(epoch, seconds since launch)`` of every validation line so far (0-based epochs)."""
        if not self.stdout_path.exists():
            return []
        text = self.stdout_path.read_text(encoding="utf-8", errors="replace")
        return [(epoch, t - self.launch) for epoch, t in parse_log(text) if epoch is not None]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop_after_deadline(self, deadline: float, poll_s: float = 1.0) -> None:
        """Wait until an epoch ends after ``deadline`` (``time.time()``), then stop the run.

        The SIGTERM comes 3 s after that epoch's validation line, once MACE has written its
        checkpoint (a few ms); MACE deletes the old checkpoint only when it saves a new one.
        """
        assert self.proc is not None
        while self.running():
            now = time.time()
            if now >= deadline and any(
                self.launch + t >= deadline for _, t in self.epochs_logged()
            ):
                time.sleep(3.0)
                break
            time.sleep(poll_s)
        self.stopped_at = time.time() - self.launch
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
            self.return_code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            usage = None
            self.return_code = self.proc.returncode
        self.proc.returncode = self.return_code
        if usage is not None:
            self.cpu_seconds = usage.ru_utime + usage.ru_stime

    def kill(self) -> None:
        """Stop the training run at once (for errors elsewhere)."""
        if self.running():
            self.proc.kill()
            self.proc.wait()

    def best_checkpoint(self) -> tuple[int, Path] | None:
        """The checkpoint MACE kept (its best validation epoch, 0-based), if any."""
        pattern = re.compile(rf"^{self.name}_run-{self.settings.seed}_epoch-(\d+)\.pt$")
        found = []
        for path in self.checkpoints_dir.glob("*.pt"):
            match = pattern.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return max(found) if found else None

    def export_best(self) -> tuple[int, str]:
        """Write ``<name>.model`` from the kept checkpoint with MACE's restart path.

        Returns the checkpoint's epoch (0-based) and the lines of MACE's own error table.
        """
        best = self.best_checkpoint()
        if best is None:
            raise RuntimeError(f"MACE left no checkpoint in {self.checkpoints_dir}")
        epoch, _ = best
        args = [*self.args(epoch), "--restart_latest", f"--log_dir={self.folder / 'export_logs'}"]
        out_path = self.folder / "mace_export.out"
        with open(out_path, "w", encoding="utf-8") as out:
            subprocess.run(
                args, stdout=out, stderr=subprocess.STDOUT, env=one_thread_env(), check=True
            )
        text = out_path.read_text(encoding="utf-8", errors="replace")
        if f"Loaded Stage one model from epoch {epoch}" not in text:
            raise RuntimeError(f"MACE did not reload the epoch-{epoch} checkpoint: {out_path}")
        if any(epoch is not None for epoch, _ in parse_log(text)):
            raise RuntimeError(f"the export rerun trained further epochs: {out_path}")
        if not self.model_path.exists():
            raise RuntimeError(f"MACE wrote no {self.model_path}: see {out_path}")
        return epoch, error_table(text)


def predict(model: Path, configs: Path, output: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Energies (eV) and forces (eV/Å) of ``model`` on ``configs`` via ``mace_eval_configs``."""
    args = [
        executable("mace_eval_configs"),
        f"--configs={configs}",
        f"--model={model}",
        f"--output={output}",
        "--device=cpu",
        "--default_dtype=float64",
        "--batch_size=10",
    ]
    log = output.with_suffix(".out")
    with open(log, "w", encoding="utf-8") as out:
        subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=one_thread_env(), check=True)
    frames = ase.io.read(output, index=":")
    inputs = ase.io.read(configs, index=":")
    if len(frames) != len(inputs):
        raise RuntimeError(f"{output}: {len(frames)} predictions for {len(inputs)} structures")
    for k, (a, b) in enumerate(zip(frames, inputs)):
        if len(a) != len(b) or np.abs(a.positions - b.positions).max() > 1e-6:
            raise RuntimeError(f"{output}: frame {k} is not frame {k} of {configs}")
    energies = np.array([float(a.info["MACE_energy"]) for a in frames])
    forces = [np.array(a.arrays["MACE_forces"], dtype=float) for a in frames]
    return energies, forces
