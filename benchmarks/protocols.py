"""The papers' accuracy protocols, trained toward convergence across working sessions.

Each protocol trains two jobs side by side, each pinned to one core (``taskset``) with one
thread, so that both get the same machine for the same wall-clock time:

* ``rmd17-50``: ICTP on rMD17 aspirin and on ethanol, 50 training frames of split 01
  (``configs/ictp-rmd17-50.yaml``), at most its 2,000 epochs;
* ``3bpa``: ICTP (``configs/ictp-3bpa-450.yaml``: C 32, L 2, nu 3, ICTP_sym, float64) and MACE
  (``mace_run_train`` through ``mace_runner.py``, the same size and optimisation settings) on
  the same 450 + 50 frames of ``train_300K`` (one seeded split written once as extended XYZ);
* ``rmd17-950``: ICTP on aspirin and on ethanol, 950 + 50 frames of split 01
  (``configs/ictp-rmd17-950.yaml``).

A protocol gets ``--budget-hours`` (default 8) of wall-clock time in all, counted across
sessions in ``<root>/<protocol>/progress.json`` (updated every minute, so a session that is
cut off loses at most a minute of its count). ``run --hours H`` spends H hours on the first
unfinished protocols in the order above. tensorpot's jobs continue with ``--resume`` from their
newest checkpoint and stop through ``time_budget_minutes`` at the end of the first epoch after
the deadline; MACE continues with ``--restart_latest`` from the one checkpoint it keeps (its best
validation epoch, so epochs after it are trained again) and is stopped by SIGTERM by the same
rule. The runs live under ``--root`` (default ``../runs/protocols``, outside the repository).

``save`` copies what each job needs to continue to ``pretrained/<job>/`` (tensorpot: the
best model, ``log.csv`` and the newest checkpoint; MACE: its kept checkpoint and its log) and
the hours of every protocol to ``pretrained/protocols.json``, so that the runs go on from a
clone on a machine where ``--root`` is gone: ``run`` copies them back into a run folder that has
no checkpoint, and the job continues with ``--resume`` (optimiser, learning-rate schedule, EMA
and epoch count included). A tensorpot job with a model under ``pretrained/`` but no checkpoint
starts from that model (``init_model``: its weights, a fresh optimiser).

``report`` does what ``save`` does, then tests every job's best-validation model on the test
files (tensorpot's jobs through ``tensorpot.evaluation.evaluate``, MACE through
``mace_eval_configs``; one metric code for both), writes each tensorpot model's learning curves
(PNG), run config, error table and training command beside it in ``pretrained/<job>/``, keeps
the results in ``pretrained/results.json`` and writes the table beside the published numbers to
``docs/benchmarks/protocols.md``, with the validation errors of tensorpot and MACE against the
hours trained (``docs/benchmarks/protocols-3bpa-curves.png``).

    setsid nohup python benchmarks/protocols.py run --hours 2 > ../runs/protocols.out 2>&1 &
    python benchmarks/protocols.py run --hours 0.05 --protocol rmd17-50 --root /tmp/proto
    python benchmarks/protocols.py status
    python benchmarks/protocols.py save      # before the machine goes: commit pretrained/
    python benchmarks/protocols.py report    # as save, tests the models, writes the table
    python benchmarks/protocols.py report --protocol 3bpa   # the others' results kept
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import mace_runner
from tensorpot.config import PATH_KEYS, load_run_config
from tensorpot.data.readers import read_configurations
from tensorpot.data.split import split_train_valid
from tensorpot.evaluation.evaluate import evaluate
from tensorpot.evaluation.plots import plot_learning_curves
from tensorpot.models import load_model
from tensorpot.training.checkpoint import atomic_torch_save, latest_checkpoint
from train_3bpa_vs_mace import error_metrics, machine_line, reference, write_frames, xyz_frames

REPO = Path(__file__).resolve().parents[1]
RMD17 = REPO.parent / "shared" / "data" / "rmd17" / "npz"
ROOT = REPO.parent / "runs" / "protocols"
PRETRAINED = REPO / "pretrained"
DOC = REPO / "docs" / "benchmarks" / "protocols.md"
#: ``<protocol>``'s validation errors of tensorpot and MACE against the hours trained.
CURVES = "protocols-{protocol}-curves.png"
#: Test frames in the repository, per model-name stem: the examples of each model's README.
BUNDLED = {
    "3bpa": "data/3bpa/test_300K_first200.xyz",
    "rmd17-aspirin": "data/rmd17/rmd17_aspirin_test_01_first100.npz",
    "rmd17-ethanol": "data/rmd17/rmd17_ethanol_test_01_first100.npz",
}
#: The hours and sessions of every protocol, kept beside the models (``save``).
STATE = "protocols.json"

#: Published numbers (MACE paper; averages over several seeds): metric -> value, per job.
PUBLISHED = {
    "rmd17-aspirin-50": ("MACE, N = 50", {"energy_mae": 17.0, "forces_mae": 43.9}),
    "rmd17-ethanol-50": ("MACE, N = 50", {"energy_mae": 6.7, "forces_mae": 32.6}),
    "rmd17-aspirin-950": ("MACE, N = 1000", {"energy_mae": 2.2, "forces_mae": 6.6}),
    "rmd17-ethanol-950": ("MACE, N = 1000", {"energy_mae": 0.4, "forces_mae": 2.1}),
    "3bpa-ictp": ("MACE, 300 K", {"test_300K/forces_rmse": 8.8}),
}


@dataclass
class Job:
    """One training run of a protocol: tensorpot on a preset, or MACE on the same files."""

    name: str
    preset: Path
    overrides: list[str] = field(default_factory=list)
    mace: bool = False

    def folder(self, root: Path, protocol: str) -> Path:
        return root / protocol / self.name


def _rmd17(molecule: str, preset: str) -> Job:
    train = RMD17 / f"rmd17_{molecule}_train_01.npz"
    test = RMD17 / f"rmd17_{molecule}_test_01.npz"
    size = preset.rsplit("-", 1)[1].split(".")[0]
    return Job(
        f"rmd17-{molecule}-{size}",
        REPO / "configs" / preset,
        [f"train_file={train}", f"test_files=[{test}]"],
    )


PROTOCOLS: dict[str, list[Job]] = {
    "rmd17-50": [_rmd17("aspirin", "ictp-rmd17-50.yaml"), _rmd17("ethanol", "ictp-rmd17-50.yaml")],
    "3bpa": [
        Job("3bpa-ictp", REPO / "configs" / "ictp-3bpa-450.yaml"),
        Job("3bpa-mace", REPO / "configs" / "ictp-3bpa-450.yaml", mace=True),
    ],
    "rmd17-950": [
        _rmd17("aspirin", "ictp-rmd17-950.yaml"), _rmd17("ethanol", "ictp-rmd17-950.yaml"),
    ],
}  # fmt: skip


def log(text: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {text}", flush=True)


# ----------------------------------------------------------------------------- bookkeeping


def read_progress(root: Path, protocol: str) -> dict[str, Any]:
    path = root / protocol / "progress.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"hours": 0.0, "sessions": []}


def write_progress(root: Path, protocol: str, progress: dict[str, Any]) -> None:
    path = root / protocol / "progress.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(progress, indent=2), encoding="utf-8")
    tmp.replace(path)


def log_rows(folder: Path) -> list[dict[str, str]]:
    """The rows of a tensorpot run's ``log.csv`` (empty before its first epoch)."""
    path = folder / "log.csv"
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def fixed_overrides(job: Job, root: Path, protocol: str) -> list[str]:
    folder = job.folder(root, protocol)
    extra = [f"output_dir={folder}", f"name={job.name}", "threads=1", "progress_bar=false",
             "checkpoint_minutes=5"]  # fmt: skip
    if protocol == "3bpa":
        split = root / protocol
        extra += [f"train_file={split / 'train.xyz'}", f"valid_file={split / 'valid.xyz'}"]
    return [*extra, "test_files=[]"]


def job_done(job: Job, root: Path, protocol: str) -> bool:
    """Whether a tensorpot job has trained its preset's ``max_num_epochs``."""
    if job.mace:
        return False
    rows = log_rows(job.folder(root, protocol))
    limit = load_run_config(job.preset).max_num_epochs
    return bool(rows) and int(rows[-1]["epoch"]) >= limit


def finished(root: Path, protocol: str, budget_hours: float) -> bool:
    if read_progress(root, protocol)["hours"] >= budget_hours:
        return True
    return all(job_done(job, root, protocol) for job in PROTOCOLS[protocol])


# ------------------------------------------------------------------- state kept in pretrained/


def state_files(job: Job, root: Path, protocol: str) -> list[Path]:
    """The files (relative to the run folder) that a job needs to continue; empty before its
    first checkpoint."""
    folder = job.folder(root, protocol)
    if job.mace:
        kept = mace_run(job, root, protocol, 0).best_checkpoint()
        return [] if kept is None else [kept[1].relative_to(folder), Path("mace_train.out")]
    newest = latest_checkpoint(folder / "checkpoints")
    if newest is None:
        return []
    names = [newest.relative_to(folder), Path("log.csv"), Path(f"{job.name}.model")]
    return [n for n in names if (folder / n).exists()]


def save_job(job: Job, root: Path, protocol: str) -> None:
    """Copy one job's state to ``pretrained/<job>/``; then drop the older checkpoints there."""
    files = state_files(job, root, protocol)
    if not files:
        return
    target = PRETRAINED / job.name
    for name in files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(job.folder(root, protocol) / name, target / name)
        if not job.mace and name.suffix == ".pt":  # no machine's paths in the repository
            convert_paths(target / name, lambda v: os.path.relpath(v, REPO), os.path.isabs)
        if job.mace and name.suffix == ".out":  # MACE's log names its files: relative there
            text = (target / name).read_text(encoding="utf-8", errors="replace")
            (target / name).write_text(text.replace(f"{REPO.parent}/", "../"), encoding="utf-8")
    for old in (target / "checkpoints").glob("*.pt"):
        if old.relative_to(target) not in files:
            old.unlink()
    log(f"{job.name}: saved {', '.join(map(str, files))} to {target}")


def convert_paths(checkpoint: Path, convert, applies) -> None:
    """Rewrite the paths of a tensorpot checkpoint's run config (relative to the repository in
    ``pretrained/``, absolute in a run folder) where ``applies`` to them."""
    state = torch.load(checkpoint, weights_only=True)
    config = state["run_config"]
    for key in PATH_KEYS:
        value = config.get(key)
        if isinstance(value, list):
            config[key] = [convert(v) if applies(v) else v for v in value]
        elif isinstance(value, str) and applies(value):
            config[key] = convert(value)
    atomic_torch_save(state, checkpoint)


def save(root: Path) -> None:
    """Copy every job's state and every protocol's hours to ``pretrained/``."""
    state_path = PRETRAINED / STATE
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
    for protocol, jobs in PROTOCOLS.items():
        progress = read_progress(root, protocol)
        if not progress["sessions"]:
            continue
        state[protocol] = progress
        for job in jobs:
            for _ in range(3):  # a running job may replace its checkpoint while it is copied
                try:
                    save_job(job, root, protocol)
                    break
                except FileNotFoundError:
                    time.sleep(1.0)
    PRETRAINED.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(state_path)


def restore(root: Path, protocol: str) -> None:
    """Copy the state saved under ``pretrained/`` into the run folders that lack it."""
    state_path = PRETRAINED / STATE
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
    if protocol in state and not (root / protocol / "progress.json").exists():
        write_progress(root, protocol, state[protocol])
        log(f"{protocol}: {state[protocol]['hours']:.2f} h so far, from {state_path}")
    for job in PROTOCOLS[protocol]:
        folder, source = job.folder(root, protocol), PRETRAINED / job.name
        if (folder / "checkpoints").is_dir() and any((folder / "checkpoints").iterdir()):
            continue
        saved = sorted((source / "checkpoints").glob("*.pt"))
        if not saved or (folder / "log.csv").exists() or (folder / "mace_train.out").exists():
            continue
        logs = ["mace_train.out"] if job.mace else ["log.csv", f"{job.name}.model"]
        for path in [*saved, *(source / name for name in logs)]:
            if path.exists():
                name = path.relative_to(source)
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, folder / name)
        if not job.mace:
            for path in saved:
                absolute = lambda v: str((REPO / v).resolve())  # noqa: E731
                convert_paths(folder / path.relative_to(source), absolute, lambda v: v[:1] != "/")
        log(f"{job.name}: continues from the state saved in {source}")


# ----------------------------------------------------------------------------- training


def split_3bpa() -> tuple[list[str], list[int], list[int]]:
    """The frames of ``train_300K`` (exact text) and the preset's 450/50 split of them: the
    indices that ``tensorpot train configs/ictp-3bpa-450.yaml`` draws itself (``valid_fraction``
    and ``seed`` of the preset)."""
    preset = load_run_config(REPO / "configs" / "ictp-3bpa-450.yaml")
    frames = xyz_frames(Path(preset.train_file))
    train_idx, valid_idx = split_train_valid(
        list(range(len(frames))), preset.valid_fraction, preset.seed
    )
    return frames, train_idx, valid_idx


def write_3bpa_split(root: Path) -> None:
    """The 3BPA split as exact copies of its frames (MACE reads them), written once."""
    folder = root / "3bpa"
    if (folder / "valid.xyz").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    frames, train_idx, valid_idx = split_3bpa()
    write_frames([frames[k] for k in train_idx], folder / "train.xyz")
    write_frames([frames[k] for k in valid_idx], folder / "valid.xyz")
    log(f"3BPA split: {len(train_idx)} train, {len(valid_idx)} valid")


class PinnedMace(mace_runner.MaceRun):
    """A MACE run pinned to one core that continues from its kept checkpoint."""

    def __init__(self, settings: mace_runner.MaceSettings, folder: Path, cpu: int):
        super().__init__(settings, folder)
        self.cpu = cpu

    def start(self, launch: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.launch = launch
        args = self.args(self.settings.max_num_epochs)
        if self.best_checkpoint() is not None:
            args.append("--restart_latest")
        with open(self.stdout_path, "a", encoding="utf-8") as out:
            self.proc = subprocess.Popen(
                ["taskset", "-c", str(self.cpu), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.folder,
            )


def mace_run(job: Job, root: Path, protocol: str, cpu: int) -> PinnedMace:
    preset = load_run_config(job.preset)
    split = root / protocol
    settings = mace_runner.MaceSettings.from_preset(
        preset, split / "train.xyz", split / "valid.xyz", preset.model["num_channels"], preset.seed
    )
    return PinnedMace(settings, job.folder(root, protocol), cpu)


def tensorpot_command(job: Job, root: Path, protocol: str, cpu: int, minutes: float) -> list[str]:
    """The training command of a tensorpot job: resumed from its newest checkpoint, or, when its
    run folder is gone, started from the model last copied to ``pretrained/``."""
    folder = job.folder(root, protocol)
    resume = (folder / "checkpoints").is_dir() and any((folder / "checkpoints").iterdir())
    committed = PRETRAINED / job.name / f"{job.name}.model"
    start = []
    if resume:
        start = ["--resume"]
    elif committed.exists() and not (folder / "log.csv").exists():
        start = [f"init_model={committed}"]
        log(f"{job.name}: no run in {folder}: starting from {committed}")
    return [
        "taskset", "-c", str(cpu), sys.executable, "-m", "tensorpot", "train", str(job.preset),
        *job.overrides, *fixed_overrides(job, root, protocol), f"time_budget_minutes={minutes:.3f}",
        *start,
    ]  # fmt: skip


def run_protocol(root: Path, protocol: str, hours: float, budget_hours: float) -> float:
    """Train ``protocol``'s jobs side by side for up to ``hours``; returns the hours spent."""
    progress = read_progress(root, protocol)
    hours = min(hours, budget_hours - progress["hours"])
    if hours <= 0:
        return 0.0
    if protocol == "3bpa":
        write_3bpa_split(root)
    jobs = [job for job in PROTOCOLS[protocol] if not job_done(job, root, protocol)]
    launch = time.time()
    deadline = launch + 3600.0 * hours
    procs: list[subprocess.Popen] = []
    maces: list[PinnedMace] = []
    threads = []
    for cpu, job in enumerate(jobs):
        job.folder(root, protocol).mkdir(parents=True, exist_ok=True)
        if job.mace:
            mace = mace_run(job, root, protocol, cpu)
            mace.start(launch)
            maces.append(mace)
            thread = threading.Thread(target=mace.stop_after_deadline, args=(deadline, 5.0))
            thread.start()
            threads.append(thread)
            log(f"{protocol}/{job.name}: MACE started on core {cpu} (pid {mace.proc.pid})")
        else:
            command = tensorpot_command(job, root, protocol, cpu, 60.0 * hours)
            out = open(job.folder(root, protocol) / "train.out", "a", encoding="utf-8")
            procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT))
            log(f"{protocol}/{job.name}: {shlex.join(command)}")
    session = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(launch))}
    progress["sessions"].append(session)
    before = progress["hours"]
    try:
        while any(p.poll() is None for p in procs) or any(t.is_alive() for t in threads):
            session["hours"] = (time.time() - launch) / 3600.0
            progress["hours"] = before + session["hours"]
            write_progress(root, protocol, progress)
            time.sleep(60.0 if time.time() < deadline else 5.0)
    except BaseException:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for mace in maces:
            mace.kill()
        raise
    finally:
        session["hours"] = (time.time() - launch) / 3600.0
        progress["hours"] = before + session["hours"]
        write_progress(root, protocol, progress)
    codes = [p.returncode for p in procs] + [m.return_code for m in maces]
    log(f"{protocol}: session of {session['hours']:.2f} h ended (exit codes {codes}), "
        f"{progress['hours']:.2f} h in all")  # fmt: skip
    return session["hours"]


# ----------------------------------------------------------------------------- report


def test_files(job: Job) -> dict[str, Path]:
    preset = load_run_config(job.preset, job.overrides)
    return {Path(p).stem: Path(p) for p in preset.test_files}


def report_tensorpot(job: Job, root: Path, protocol: str) -> dict[str, Any] | None:
    folder = job.folder(root, protocol)
    model_path = folder / f"{job.name}.model"
    rows = log_rows(folder)
    if not model_path.exists() or not rows:
        return None
    model = load_model(model_path)
    errors = {}
    for name, path in test_files(job).items():
        configs = read_configurations(path)
        _, preds = evaluate(model, configs, batch_size=10)
        errors[name] = error_metrics(
            np.array([c.energy for c in configs]), np.array([p.energy for p in preds]),
            [np.asarray(c.forces) for c in configs], [np.asarray(p.forces) for p in preds],
        )  # fmt: skip
        log(f"{job.name}: tested on {name}")
    valid = [r for r in rows if r.get("valid_loss")]
    best = min(valid, key=lambda r: float(r["valid_loss"]))
    result = {
        "epochs": int(rows[-1]["epoch"]),
        "best_epoch": int(best["epoch"]),
        "lr": float(rows[-1]["lr"]),
        "parameters": sum(p.numel() for p in model.parameters()),
        "errors": errors,
    }
    target = PRETRAINED / job.name
    target.mkdir(parents=True, exist_ok=True)
    plot_learning_curves(
        folder / "log.csv", target / "learning_curves.png", overwrite=True, title=job.name
    )
    write_config(job, root, protocol, target)
    return result


def write_config(job: Job, root: Path, protocol: str, target: Path) -> None:
    """The run's config as ``config.yaml`` beside its model, paths relative to that file."""
    fixed = fixed_overrides(job, root, protocol)[:-1]  # the test files kept
    data = load_run_config(job.preset, [*job.overrides, *fixed]).model_dump(mode="json")

    def relative(value: Any) -> Any:
        if isinstance(value, str) and os.path.isabs(value):
            return os.path.relpath(value, target)
        return value

    for key in PATH_KEYS:
        value = data.get(key)
        data[key] = [relative(v) for v in value] if isinstance(value, list) else relative(value)
    text = yaml.safe_dump(data, sort_keys=False)
    (target / "config.yaml").write_text(text, encoding="utf-8")


def report_mace(job: Job, root: Path, protocol: str) -> dict[str, Any] | None:
    run = mace_run(job, root, protocol, 0)
    if run.best_checkpoint() is None:
        return None
    epoch, _ = run.export_best()
    tests = test_files(job)
    # one single-threaded mace_eval_configs per test file, side by side (nothing else runs)
    with ThreadPoolExecutor(max_workers=len(tests)) as pool:
        preds = {
            name: pool.submit(
                mace_runner.predict, run.model_path, path, run.folder / f"pred_{name}.xyz"
            )
            for name, path in tests.items()
        }
        errors = {}
        for name, path in tests.items():
            energies, forces = preds[name].result()
            ref_e, ref_f = reference(path, None)
            errors[name] = error_metrics(ref_e, energies, ref_f, forces)
            log(f"{job.name}: tested on {name}")
    epochs = [e for e, _ in run.epochs_logged()]
    return {"epochs": max(epochs) + 1 if epochs else 0, "best_epoch": epoch + 1, "errors": errors}


MACE_EPOCH = re.compile(r"Epoch (\d+): .*RMSE_E=\s*([\d.]+) meV, RMSE_F=\s*([\d.]+) meV / A")


def mace_curve(log: Path) -> dict[str, np.ndarray]:
    """MACE's validation errors (``TotalRMSE`` table: energy meV, forces meV/Å) at each epoch
    line of its log, against the hours trained: per session, from its ``Started training``
    line, the sessions' hours summed (time after a session's last epoch line is not counted)."""
    hours, energy, forces = [], [], []
    done, start, last = 0.0, None, None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
        except ValueError:
            continue
        if "Started training" in line:
            done += 0.0 if last is None else last - start
            start, last = stamp, None
        match = MACE_EPOCH.search(line)
        if match is not None and start is not None:
            last = stamp
            hours.append((done + stamp - start) / 3600.0)
            energy.append(float(match.group(2)))
            forces.append(float(match.group(3)))
    return {"hours": np.array(hours), "energy": np.array(energy), "forces": np.array(forces)}


def tensorpot_curve(folder: Path, num_atoms: int) -> dict[str, np.ndarray]:
    """tensorpot's validation errors (energy meV for ``num_atoms`` atoms, forces meV/Å) at
    each epoch of ``log.csv``, against the hours trained (the epochs' times summed)."""
    rows = [r for r in log_rows(folder) if r.get("valid_loss")]
    return {
        "hours": np.cumsum([float(r["time_s"]) for r in rows]) / 3600.0,
        "energy": np.array([float(r["valid_energy_rmse_meV_per_atom"]) for r in rows]) * num_atoms,
        "forces": np.array([float(r["valid_forces_rmse_meV_per_A"]) for r in rows]),
    }


def plot_against_mace(root: Path, protocol: str) -> Path | None:
    """The validation curves of a protocol's tensorpot and MACE jobs against the hours trained
    (the same validation frames, one core each), as ``docs/benchmarks/<CURVES>``."""
    jobs = PROTOCOLS[protocol]
    ours = [j for j in jobs if not j.mace and (j.folder(root, protocol) / "log.csv").exists()]
    mace = [j for j in jobs if j.mace and (j.folder(root, protocol) / "mace_train.out").exists()]
    if not ours or not mace:
        return None
    sizes = {len(frame.numbers) for frame in read_configurations(root / protocol / "valid.xyz")}
    if len(sizes) != 1:  # per-atom energies would not convert to MACE's total-energy RMSE
        return None
    curves = {j.name: tensorpot_curve(j.folder(root, protocol), sizes.pop()) for j in ours}
    curves |= {j.name: mace_curve(j.folder(root, protocol) / "mace_train.out") for j in mace}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for ax, key, label in zip(axes, ("energy", "forces"), ("E-RMSE (meV)", "F-RMSE (meV/Å)")):
        for name, curve in curves.items():
            ax.plot(curve["hours"], curve[key], marker="o", ms=2, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("hours trained (one core)")
        ax.set_ylabel(f"validation {label}")
        ax.legend()
    fig.suptitle(f"{protocol}: validation errors against training time, side by side")
    path = DOC.parent / CURVES.format(protocol=protocol)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(root: Path, budget_hours: float, chosen: list[str]) -> None:
    """Test the jobs of the ``chosen`` protocols; the table keeps the other protocols' results
    from ``pretrained/results.json``."""
    for protocol in chosen:
        restore(root, protocol)
    save(root)
    kept = PRETRAINED / "results.json"
    results = json.loads(kept.read_text(encoding="utf-8")) if kept.exists() else {}
    for protocol in chosen:
        hours = read_progress(root, protocol)["hours"]
        for job in PROTOCOLS[protocol]:
            found = (report_mace if job.mace else report_tensorpot)(job, root, protocol)
            if found is not None:
                results[job.name] = {**found, "protocol": protocol, "hours": hours}
                if not job.mace:
                    write_readme(job.name, results[job.name])
        plot_against_mace(root, protocol)
    kept.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    DOC.write_text(document(results, budget_hours), encoding="utf-8")
    log(f"wrote {DOC} and {PRETRAINED}")


def metric_columns(protocol: str) -> list[tuple[str, str]]:
    if protocol == "3bpa":
        return [(f"{t}/{m}", f"{t} {label}") for t in ("test_300K", "test_600K")
                for m, label in (("energy_rmse", "E-RMSE"), ("forces_rmse", "F-RMSE"))]  # fmt: skip
    return [("energy_mae", "E-MAE"), ("forces_mae", "F-MAE")]


def metric(result: dict[str, Any], key: str) -> float:
    if "/" in key:
        test, name = key.split("/")
        return result["errors"][test][name]
    (errors,) = result["errors"].values()
    return errors[key]


def table(results: dict[str, dict[str, Any]], protocol: str) -> list[str]:
    columns = metric_columns(protocol)
    lines = [
        "| model | " + " | ".join(label for _, label in columns)
        + " | epochs (best) | hours | final lr |",
        "|---" * (len(columns) + 4) + "|",
    ]  # fmt: skip
    for job in PROTOCOLS[protocol]:
        result = results.get(job.name)
        if result is None:
            lines.append(f"| {job.name} | " + " | ".join("-" for _ in columns) + " | not run | | |")
            continue
        cells = [f"{metric(result, key):.1f}" for key, _ in columns]
        lr = f"{result['lr']:.2g}" if "lr" in result else "-"
        lines.append(
            f"| {job.name} | " + " | ".join(cells)
            + f" | {result['epochs']} ({result['best_epoch']}) | {result['hours']:.1f} | {lr} |"
        )  # fmt: skip
        if job.name in PUBLISHED:
            label, values = PUBLISHED[job.name]
            cells = [f"{values[k]:.1f}" if k in values else "-" for k, _ in columns]
            lines.append(f"| published: {label} | " + " | ".join(cells) + " | | | |")
    return lines


def document(results: dict[str, dict[str, Any]], budget_hours: float) -> str:
    lines = [
        "# The papers' protocols, trained toward convergence",
        "",
        "Written by `python benchmarks/protocols.py report` from the runs of "
        "`python benchmarks/protocols.py run` (see its docstring for the protocols). Each "
        f"protocol gets at most {budget_hours:g} hours of wall-clock time on "
        f"this machine ({machine_line()}), its two jobs side by side, one core and one thread "
        "each. One seed each; the published numbers (MACE paper) are averages over several seeds "
        "of trainings run to convergence (the ICTP paper's protocol: 2,000 epochs). "
        "rMD17: MAE (meV, meV/Å) on the 1,000 test frames of split "
        "01; 3BPA: RMSE (meV, meV/Å) on `test_300K` and `test_600K`. The models, their logs, "
        "learning curves and training commands are under `pretrained/<job>/`.",
        "",
    ]
    for protocol in PROTOCOLS:
        lines += [f"## {protocol}", "", *table(results, protocol), ""]
        trained = [j.name for j in PROTOCOLS[protocol] if not j.mace and j.name in results]
        curves = [f"[{name}](../../pretrained/{name}/learning_curves.png)" for name in trained]
        if curves:
            lines += ["Learning curves: " + ", ".join(curves) + ".", ""]
        against = CURVES.format(protocol=protocol)
        if (DOC.parent / against).exists():
            lines += [
                f"![{protocol}: validation errors against hours]({against})",
                "",
                "Validation errors (the same frames) against the hours each job has trained: "
                "tensorpot's epoch times summed; MACE's time from the start of its training in "
                "each session to each epoch's validation line, summed over the sessions (MACE "
                "continues from its best checkpoint, so epochs after it are trained again; its "
                "energy error is higher in the first epoch after each continuation).",
                "",
            ]
    return "\n".join(lines)


def write_readme(name: str, result: dict[str, Any]) -> None:
    protocol = result["protocol"]
    (job,) = [j for j in PROTOCOLS[protocol] if j.name == name]
    command = shlex.join(["tensorpot", "train", str(job.preset.relative_to(REPO)), *[
        o.replace(str(REPO.parent), "..") for o in job.overrides]])  # fmt: skip
    data = ""
    if protocol == "3bpa":
        _, train_idx, valid_idx = split_3bpa()
        split = {"file": "train_300K.xyz", "train": train_idx, "valid": valid_idx}
        (PRETRAINED / name / "split.json").write_text(json.dumps(split) + "\n", encoding="utf-8")
        data = (
            " The command splits `train_300K.xyz` (bundled as `data/3bpa/train_300K.xyz`) into "
            f"{len(train_idx)} training and {len(valid_idx)} validation frames itself, with the "
            "preset's `valid_fraction` and `seed`; the protocol wrote the same frames to files "
            "for MACE to train on the same data; their indices (from 0) are in `split.json`."
        )
    frames = BUNDLED[job.name.rsplit("-", 1)[0]]
    rows = [f"| {test} | " + " | ".join(f"{errors[k]:.2f}" for k in (
        "energy_mae", "energy_rmse", "forces_mae", "forces_rmse")) + " |"
        for test, errors in result["errors"].items()]  # fmt: skip
    text = "\n".join([
        f"# {name}",
        "",
        f"ICTP trained on the `{protocol}` protocol of `benchmarks/protocols.py`: "
        f"{result['epochs']} epochs (best validation at epoch {result['best_epoch']}), "
        f"{result['hours']:.1f} hours of wall-clock time on one core, {result['parameters']} "
        "parameters. Not converged where the learning curves still fall.",
        "",
        f"Trained with `{command}` (the run's whole config is `config.yaml`; one thread, "
        f"continued with `--resume` day after day).{data} The model file holds its "
        "architecture and statistics. Use it as any model file, e.g. on the bundled test "
        f"frames of its molecule: `tensorpot eval --model pretrained/{name}/{name}.model "
        f"--data {frames}`, or MD from the first of them: "
        f"`tensorpot md --model pretrained/{name}/{name}.model --structure "
        f"{frames} --time 0.5`.",
        "",
        "| test set | E-MAE (meV) | E-RMSE (meV) | F-MAE (meV/Å) | F-RMSE (meV/Å) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "![learning curves](learning_curves.png)",
        "",
    ])  # fmt: skip
    (PRETRAINED / name / "README.md").write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------- main


def main() -> None:
    global PRETRAINED, DOC
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("run", "status", "save", "report"))
    parser.add_argument("--hours", type=float, default=1.0, help="hours of this session (run)")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), action="append")
    parser.add_argument("--budget-hours", type=float, default=8.0, help="per protocol, in all")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--pretrained", type=Path, default=PRETRAINED, help="report: models")
    parser.add_argument("--doc", type=Path, default=DOC, help="report: the table")
    args = parser.parse_args()
    PRETRAINED, DOC = args.pretrained.resolve(), args.doc.resolve()
    root = args.root.resolve()
    if root.is_relative_to(REPO):
        raise SystemExit("--root must lie outside the repository")
    chosen = args.protocol or list(PROTOCOLS)
    if args.action == "status":
        for protocol in chosen:
            progress = read_progress(root, protocol)
            epochs = {job.name: (log_rows(job.folder(root, protocol))[-1:] or [{}])[0].get("epoch")
                      for job in PROTOCOLS[protocol] if not job.mace}  # fmt: skip
            state = "finished" if finished(root, protocol, args.budget_hours) else "open"
            print(f"{protocol}: {progress['hours']:.2f} h, {state}, epochs {epochs}")
        return
    if args.action == "save":
        save(root)
        return
    if args.action == "report":
        report(root, args.budget_hours, chosen)
        return
    left = args.hours
    log(f"{machine_line()}; root {root}")
    for protocol in chosen:
        if left <= 1.0 / 60.0:
            break
        restore(root, protocol)
        if finished(root, protocol, args.budget_hours):
            continue
        left -= run_protocol(root, protocol, left, args.budget_hours)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the jobs too (see run_protocol)
    main()
