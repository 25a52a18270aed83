"""What the accuracy protocols of ``protocols.py`` train, and the state that carries them across
sessions.

A protocol is two jobs trained side by side (:data:`PROTOCOLS`): tensorpot on a preset, or MACE
(``mace_run_train`` through ``mace_runner.py``) on the same files. Each job trains in its run
folder ``<root>/<protocol>/<job>/``, outside the repository; the hours a protocol has trained are
counted in ``<root>/<protocol>/progress.json``. :func:`save` copies what each job needs to
continue to ``<pretrained>/<job>/`` (tensorpot: the best model, ``log.csv`` and the newest
checkpoint, its config's paths relative to the repository; MACE: its kept checkpoint and its log)
and the hours to ``<pretrained>/protocols.json``; :func:`restore` copies them back into run
folders that have no checkpoint, the paths made absolute again.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import mace_runner
from tensorpot.config import PATH_KEYS, load_run_config
from tensorpot.data.split import split_train_valid
from tensorpot.training.checkpoint import atomic_torch_save, latest_checkpoint
from train_3bpa_vs_mace import write_frames, xyz_frames

REPO = Path(__file__).resolve().parents[1]
RMD17 = REPO.parent / "shared" / "data" / "rmd17" / "npz"
#: Where the run folders live by default.
ROOT = REPO.parent / "runs" / "protocols"
#: Where each job's state, model and report are kept in the repository by default.
PRETRAINED = REPO / "pretrained"
#: The hours and sessions of every protocol, kept beside the models (``save``).
STATE = "protocols.json"


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


def save_job(job: Job, root: Path, protocol: str, pretrained: Path) -> None:
    """Copy one job's state to ``<pretrained>/<job>/``; then drop the older checkpoints there."""
    files = state_files(job, root, protocol)
    if not files:
        return
    target = pretrained / job.name
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


def save(root: Path, pretrained: Path = PRETRAINED) -> None:
    """Copy every job's state and every protocol's hours to ``pretrained``."""
    state_path = pretrained / STATE
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
    for protocol, jobs in PROTOCOLS.items():
        progress = read_progress(root, protocol)
        if not progress["sessions"]:
            continue
        state[protocol] = progress
        for job in jobs:
            for _ in range(3):  # a running job may replace its checkpoint while it is copied
                try:
                    save_job(job, root, protocol, pretrained)
                    break
                except FileNotFoundError:
                    time.sleep(1.0)
    pretrained.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(state_path)


def restore(root: Path, protocol: str, pretrained: Path = PRETRAINED) -> None:
    """Copy the state saved under ``pretrained`` into the run folders that lack it."""
    state_path = pretrained / STATE
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
    if protocol in state and not (root / protocol / "progress.json").exists():
        write_progress(root, protocol, state[protocol])
        log(f"{protocol}: {state[protocol]['hours']:.2f} h so far, from {state_path}")
    for job in PROTOCOLS[protocol]:
        folder, source = job.folder(root, protocol), pretrained / job.name
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


# ------------------------------------------------------------ the 3BPA split and MACE's runs


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
