"""ViSNet, FreeCG, QuinNet, QuinNet + FreeCG, ICTP, ICTP + FreeCG (Cartesian coupling of the
abstract edges up to rank 2 and 3) and MACE on rMD17 aspirin 50/50 with the same wall-clock
budget.

The protocol of the FreeCG and QuinNet issues: each model trains for B minutes (default 20) of
wall-clock time with 2 threads, one after the other (never two at once, so that none slows
another), then its best-validation EMA model is tested on the 1,000 frames of
``rmd17_aspirin_test_01``. Fixed frames: 0-49 of ``rmd17_aspirin_train_01`` to train, 50-99
to validate (``benchmarks/rmd17_subsets.py`` writes them under ``runs/rmd17/``; this script
calls it when they are missing).

* ViSNet, FreeCG, QuinNet, QuinNet + FreeCG, ICTP, ICTP + FreeCG: ``python -m tensorpot train
  configs/<model>-rmd17-aspirin-50-20min.yaml output_dir=<work>/<model> time_budget_minutes=B``,
  each in its own process. tensorpot stops at the end of the first epoch that ends after B
  minutes and tests the best model on the test set itself; the errors are read from the run's
  ``errors.md``.
* MACE: ``mace_run_train`` through ``benchmarks/mace_runner.py`` (ScaleShiftMACE of ICTP's size,
  float32, 2 threads), stopped with SIGTERM at the end of the first epoch that ends after B
  minutes; the kept best-validation EMA checkpoint is exported to a model and tested here with
  ``mace_tensorial.evaluate_mace`` (tensorpot's metric names and definitions) on the test frames
  converted once to an eV extxyz file in the work folder.

Resumable across sessions: every model's numbers land in ``<work>/<model>/result.json``; a model
with a result is skipped, one with a folder but no result (an interrupted run) is restarted
from scratch, since a resumed run would get a fresh time budget. ``--overwrite`` reruns models
that have a result. The Markdown table (``--doc``) is rewritten after every model from the
results present; models without one are listed as not run yet. A model that starts on a busy
machine (load above 0.5, or another training run) gets a warning, and its load averages are in
the table. Ctrl-C or SIGTERM stops the running training as well. In the background, across
sessions (8 x 20 min at the default budget, plus some minutes of testing each):

    setsid nohup python benchmarks/same_budget_aspirin.py > runs/aspirin_same_budget.out 2>&1 &

    python benchmarks/same_budget_aspirin.py                          # all eight, 20 min each
    python benchmarks/same_budget_aspirin.py --only mace              # one model
    python benchmarks/same_budget_aspirin.py --minutes 0.3 --work /tmp/sb --doc /tmp/sb.md
    python benchmarks/same_budget_aspirin.py --doc-only               # the table, no training
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

import mace_runner
from mace_tensorial import LOG_LINE, evaluate_mace, hidden_irreps, load_model, thread_env
from tensorpot.config import load_run_config

REPO = Path(__file__).resolve().parents[1]
#: tensorpot's models (a preset ``configs/<model>-rmd17-aspirin-50-20min.yaml`` each), then MACE
MODELS = (
    "visnet", "freecg", "quinnet", "quinnet-freecg", "ictp", "ictp-freecg-l2", "ictp-freecg-l3",
    "mace",
)  # fmt: skip
LABELS = {
    "visnet": "ViSNet", "freecg": "FreeCG", "quinnet": "QuinNet",
    "quinnet-freecg": "QuinNet + FreeCG", "ictp": "ICTP",
    "ictp-freecg-l2": "ICTP + FreeCG (Cartesian, l_max 2)",
    "ictp-freecg-l3": "ICTP + FreeCG (Cartesian, l_max 3)", "mace": "MACE",
}  # fmt: skip
PRESETS = {m: REPO / "configs" / f"{m}-rmd17-aspirin-50-20min.yaml" for m in MODELS[:-1]}
THREADS = 2
WORK = REPO / "runs" / "aspirin_same_budget"
DOC = REPO / "docs" / "benchmarks" / "aspirin_same_budget.md"
SUBSETS = REPO / "benchmarks" / "rmd17_subsets.py"
#: the MACE model, MACE's flag names: ICTP's size (32 channels, max_L 2, correlation 3)
MACE_SETTINGS = {
    "channels": 32,
    "max_L": 2,
    "max_ell": 3,
    "correlation": 3,
    "r_max": 5.0,
    "num_interactions": 2,
    "batch_size": 4,
    "valid_batch_size": 25,
    "lr": 0.01,
    "energy_weight": 1.0,
    "forces_weight": 100.0,
    "ema_decay": 0.99,
    "seed": 1,
    "max_num_epochs": 100000,
}
MACE_DTYPE = "float32"
#: MACE flags that name files or folders of one run (left out of the doc's settings)
MACE_PATH_FLAGS = (
    "--work_dir", "--checkpoints_dir", "--model_dir", "--results_dir", "--train_file",
    "--valid_file", "--log_dir",
)  # fmt: skip
#: run keys whose defaults the doc names when a preset leaves them out
OPTIMISER_KEYS = (
    "optimizer", "amsgrad", "weight_decay", "lr_warmup_steps", "scheduler_patience", "lr_factor",
    "min_lr", "clip_grad", "energy_loss_smoothing", "stage_two",
)  # fmt: skip
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def shown(path: Path) -> str:
    """``path`` relative to the repository when it lies in it (the doc names no machine paths)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- data


def data_files() -> tuple[Path, Path, Path]:
    """Train, valid and test files of the presets (the three agree; checked)."""
    found = set()
    for preset in PRESETS.values():
        raw = yaml.safe_load(preset.read_text(encoding="utf-8"))
        files = (raw["train_file"], raw["valid_file"], *raw["test_files"])
        found.add(tuple((preset.parent / f).resolve() for f in files))
    if len(found) != 1:
        raise SystemExit(f"the presets {', '.join(map(shown, PRESETS.values()))} differ in data")
    train, valid, test = found.pop()
    return train, valid, test


def subset(frames: str, output: Path, split: str = "train_01") -> None:
    """Write frames ``start:stop`` of ``rmd17_aspirin_<split>.npz`` as an eV extxyz file."""
    log(f"writing {shown(output)}: frames {frames} of rmd17_aspirin_{split} (eV, eV/Å)")
    args = [sys.executable, str(SUBSETS), "aspirin", frames, str(output), f"--split={split}"]
    subprocess.run(args, check=True, cwd=REPO)


def ensure_splits(train: Path, valid: Path) -> None:
    for path, frames in ((train, "0:50"), (valid, "50:100")):
        if not path.exists():
            subset(frames, path)


def test_xyz(work: Path, test: Path) -> Path:
    """The test frames as an eV extxyz file for MACE (written once, kept in the work folder)."""
    path = work / "data" / f"{test.stem}.xyz"
    if not path.exists():
        subset("0:1000", path, split=test.stem.removeprefix("rmd17_aspirin_"))
    return path


# ----------------------------------------------------------------------------- running


class Progress(threading.Thread):
    """Prints the newest line of ``path`` that matches ``pattern``, at most once a minute."""

    def __init__(self, label: str, path: Path, pattern: re.Pattern, every: float = 60.0):
        super().__init__(daemon=True)
        self.label, self.path, self.pattern, self.every = label, path, pattern, every
        self.done = threading.Event()
        self.printed: str | None = None

    def newest(self) -> str | None:
        if not self.path.exists():
            return None
        text = self.path.read_text(encoding="utf-8", errors="replace")
        lines = [line for line in text.splitlines() if self.pattern.search(line)]
        return lines[-1].strip() if lines else None

    def show(self) -> None:
        line = self.newest()
        if line is not None and line != self.printed:
            log(f"{self.label}: {line}")
            self.printed = line

    def run(self) -> None:
        last = time.time()
        while not self.done.wait(5.0):
            if time.time() - last >= self.every:
                self.show()
                last = time.time()

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()
        self.show()


def wait_child(proc: subprocess.Popen) -> tuple[int, float]:
    """Exit code and CPU seconds (user + system) of a child process, once it has ended."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()  # interrupted: no orphan keeps training after this script
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def ancestors() -> set[int]:
    """This process and those it runs under (the shell or ``nice`` that started it)."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def busy_processes() -> list[str]:
    """Other training runs on this machine (a same-budget run wants a quiet machine)."""
    found, mine = [], ancestors()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if re.search(r"tensorpot train|mace_run_train|same_budget_aspirin", args):
            found.append(f"{entry.name}: {args[:100]}")
    return found


def check_quiet(label: str) -> tuple[float, float, float]:
    load = os.getloadavg()
    others = busy_processes()
    if load[0] > 0.5 or others:
        log(f"warning: {label} starts on a busy machine: load {load[0]:.2f}")
        for line in others:
            log(f"  running: {line}")
    return load


def read_error_table(path: Path) -> dict[str, dict[str, float]]:
    """``{data set: {metric: value}}`` of tensorpot's ``errors.md`` (metric names without
    their units; energy-like ones are in meV units, as ``format_error_table`` writes them)."""
    text = path.read_text(encoding="utf-8")
    rows = [line.strip().strip("|").split("|") for line in text.splitlines()]
    rows = [[cell.strip() for cell in row] for row in rows if len(row) > 1]
    header, body = rows[0], rows[2:]
    metrics = [cell.split(" (")[0] for cell in header[1:]]
    return {row[0]: {m: float(v) for m, v in zip(metrics, row[1:]) if v != "-"} for row in body}


def stamped_lines(path: Path) -> list[tuple[float, str]]:
    """``(unix time, message)`` of the lines of tensorpot's ``train.log``."""
    found = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = STAMP.match(line)
        if match:
            stamp = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
            found.append((stamp, match.group(2)))
    return found


def run_tensorpot(
    model: str, folder: Path, minutes: float, test: Path, preset: Path | None = None,
    more_tests: tuple[Path, ...] = (),
) -> dict[str, Any]:  # fmt: skip
    """Train and test one tensorpot model in its own process; its numbers as a dict.

    ``preset``: ``PRESETS[model]`` by default; ``more_tests``: test files after ``test`` whose
    errors go under ``"tests"`` (``{file stem: errors}``, ``test`` included)."""
    preset = PRESETS[model] if preset is None else preset
    overrides = [f"output_dir={folder}", f"time_budget_minutes={minutes:g}"]
    shown_overrides = [f"output_dir={shown(folder)}", *overrides[1:]]  # run from the repo root
    args = [sys.executable, "-m", "tensorpot", "train", str(preset), *overrides]
    folder.mkdir(parents=True)
    out = folder / "train.out"
    load_before = check_quiet(model)
    launch = time.time()
    log(f"{model}: tensorpot train {shown(preset)}, {minutes:g} min, log {out}")
    with open(out, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(
            args, stdout=handle, stderr=subprocess.STDOUT, env=thread_env(THREADS), cwd=REPO
        )
    with Progress(model, out, re.compile(r"^epoch \d+/")):
        code, cpu = wait_child(proc)
    end = time.time()
    if code != 0:
        raise SystemExit(f"{model}: tensorpot train failed (exit code {code}): see {out}")
    name = yaml.safe_load(preset.read_text(encoding="utf-8"))["name"]
    tables = read_error_table(folder / "errors.md")
    with open(folder / "log.csv", encoding="utf-8") as handle:
        epochs = [r for r in csv.DictReader(handle)]
    best = min((r for r in epochs if r["valid_loss"]), key=lambda r: float(r["valid_loss"]))
    lines = stamped_lines(folder / "train.log")
    stopped = [t for t, text in lines if text.startswith("epoch ")][-1]
    text = "\n".join(text for _, text in lines)
    parameters = int(re.search(r"(\d+) parameters", text).group(1))
    n_test = int(re.search(rf"(\d+) test \({re.escape(test.stem)}\)", text).group(1))
    return {
        "test": {**tables[test.stem], "n_structures": n_test},
        "tests": {t.stem: tables[t.stem] for t in (test, *more_tests)},
        "valid": tables["valid"],
        "epochs": len(epochs),
        "best_epoch": int(best["epoch"]),
        "parameters": parameters,
        "stopped_min": (stopped - launch) / 60.0,
        "wall_min": (end - launch) / 60.0,
        "cpu_min": cpu / 60.0,
        "cpu_of": "the tensorpot process: training and its final evaluation on valid and test",
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "model_file": shown(folder / f"{name}.model"),
        "settings": {
            "preset": shown(preset),
            "command": shlex.join(["tensorpot", "train", shown(preset), *shown_overrides]),
        },
    }


class ThreadedMaceRun(mace_runner.MaceRun):
    """:class:`mace_runner.MaceRun` with ``THREADS`` threads, ``MACE_DTYPE`` and E0s average."""

    def args(self, max_num_epochs: int) -> list[str]:
        new = {"--default_dtype": MACE_DTYPE, "--E0s": "average"}
        args = super().args(max_num_epochs)
        for flag, value in new.items():
            (k,) = [k for k, a in enumerate(args) if a.startswith(f"{flag}=")]
            args[k] = f"{flag}={value}"
        return args

    def env(self) -> dict[str, str]:
        """``THREADS`` threads (``MaceRun`` gives its child one)."""
        return thread_env(THREADS)


def run_mace(folder: Path, minutes: float, train: Path, valid: Path, test: Path) -> dict:
    """Train MACE for ``minutes``, export its best checkpoint and test it; its numbers."""
    settings = mace_runner.MaceSettings(train_file=train, valid_file=valid, e0s={}, **MACE_SETTINGS)
    mace = ThreadedMaceRun(settings, folder)
    load_before = check_quiet("mace")
    launch = time.time()
    mace.start(launch)
    log(f"mace: mace_run_train (pid {mace.proc.pid}), {minutes:g} min, log {mace.stdout_path}")
    try:
        with Progress("mace", mace.stdout_path, LOG_LINE):
            mace.stop_after_deadline(launch + 60.0 * minutes)
    except BaseException:
        mace.kill()
        raise
    epochs = mace.epochs_logged()
    log(f"mace: stopped after {mace.stopped_at / 60:.2f} min, {len(epochs)} epochs")
    best_epoch, _ = mace.export_best()
    log(f"mace: exported the best checkpoint (epoch {best_epoch + 1}); testing it")
    tables = evaluate_mace(mace.model_path, {"test": test, "valid": valid}, threads=THREADS)
    parameters = sum(p.numel() for p in load_model(mace.model_path).parameters())
    flags = mace.args(settings.max_num_epochs)[1:]
    flags = [a for a in flags if a.split("=")[0] not in MACE_PATH_FLAGS]
    return {
        "test": tables["test"],
        "valid": tables["valid"],
        "epochs": len(epochs),
        "best_epoch": best_epoch + 1,
        "parameters": parameters,
        "stopped_min": mace.stopped_at / 60.0,
        "wall_min": (time.time() - launch) / 60.0,
        "cpu_min": None if mace.cpu_seconds is None else mace.cpu_seconds / 60.0,
        "cpu_of": "the mace_run_train training process (not the export or the test)",
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "model_file": shown(mace.model_path),
        "settings": {"command": shlex.join(["mace_run_train", *flags])},
    }


def mace_text() -> str:
    """The MACE settings in words, for the doc."""
    s = MACE_SETTINGS
    return (
        "`mace_run_train` (mace-torch) through `benchmarks/mace_runner.py` on the same train "
        "and valid files: ScaleShiftMACE, "
        f"{s['num_interactions']} interactions, hidden irreps "
        f"`{hidden_irreps(s['channels'], s['max_L'])}` (max_L {s['max_L']}), max_ell "
        f"{s['max_ell']}, correlation {s['correlation']}, r_max {s['r_max']:g}, E0s average, "
        f"batch {s['batch_size']}, AMSGrad Adam lr {s['lr']:g}, weight decay 5e-7, "
        "ReduceLROnPlateau (factor 0.8, patience 50), weighted loss (per-atom energies) with "
        f"energy_weight {s['energy_weight']:g} and forces_weight {s['forces_weight']:g}, EMA "
        f"{s['ema_decay']:g}, no gradient clipping, {MACE_DTYPE}, seed {s['seed']}, "
        f"`OMP_NUM_THREADS={THREADS}`; "
        "stopped with SIGTERM 3 s after the validation line of the first epoch that ended "
        "after the budget (which counts from the process launch, imports included); its kept "
        "best-validation checkpoint exported with `mace_run_train --restart_latest` (no "
        "further training) and tested with `evaluate_mace` of `benchmarks/mace_tensorial.py` "
        "(tensorpot's metric definitions)"
    )


# ----------------------------------------------------------------------------- the doc


def machine_line() -> str:
    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("torch", "tensorpot", "mace-torch")
    )
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {versions}"


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def loads(values: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def yaml_text(value: object) -> str:
    """A preset's value as its YAML file writes it (``true``, ``null``, ``5.0e-4`` as 0.0005)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def preset_text(preset: Path) -> str:
    """The settings of a preset in one line: its model keys, its run keys, and the defaults of
    the optimiser keys it leaves out (they differ between the families' recipes)."""
    raw = yaml.safe_load(preset.read_text(encoding="utf-8"))
    model = dict(raw.pop("model"))
    skip = ("train_file", "valid_file", "test_files", "name", "output_dir")
    config = load_run_config(preset)
    defaults = [k for k in OPTIMISER_KEYS if k not in raw]
    return (
        f"`{shown(preset)}`: model {model.pop('model')} ("
        + ", ".join(f"{k} {yaml_text(v)}" for k, v in model.items())
        + ", the rest tensorpot's defaults); "
        + ", ".join(f"{k} {yaml_text(v)}" for k, v in raw.items() if k not in skip)
        + "; by default "
        + ", ".join(f"{k} {yaml_text(getattr(config, k))}" for k in defaults)
    )


def doc_text(results: dict[str, dict], test: Path, minutes: float) -> str:
    """The Markdown page from the results present (``{model: result}``)."""
    commands = list(dict.fromkeys(r["command"] for r in results.values()))
    budgets = sorted({r["minutes"] for r in results.values()}) or [minutes]
    if not commands:
        said = "no result yet; the command that runs all of them:"
        commands = [shlex.join(["python", shown(Path(__file__)), f"--minutes={minutes:g}"])]
    else:
        said = "the command that produced them:" if len(commands) == 1 else "the commands:"
    lines = [
        "# rMD17 aspirin 50/50: "
        + ", ".join(LABELS[m] for m in MODELS)
        + ", "
        + "/".join(f"{b:g}" for b in budgets)
        + " minutes each",
        "",
        f"Written by `benchmarks/same_budget_aspirin.py` from the results present; {said}",
        "",
        "```",
        *commands,
        "```",
        "",
        "Training: frames 0-49 of `rmd17_aspirin_train_01`, validation: frames 50-99 (the same "
        "extxyz files for all, eV and eV/Å, `benchmarks/rmd17_subsets.py`); test: the "
        f"1,000 frames of `{test.name}` (kcal/mol, converted to eV). Each model trains alone "
        "(one after the other), one process with 2 threads, until the end of the first "
        "epoch that ends after the budget; its best-validation EMA model is tested. Energy "
        "errors are per molecule (meV), force errors per component (meV/Å).",
        "",
        "| model | E-MAE (meV) | F-MAE (meV/Å) | E-RMSE (meV) | F-RMSE (meV/Å) | epochs | "
        "best epoch | parameters | budget (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model in MODELS:
        r = results.get(model)
        if r is None:
            lines.append(f"| {LABELS[model]} | not run yet | | | | | | | |")
            continue
        t = r["test"]
        lines.append(
            f"| {LABELS[model]} | {fmt(t['energy_mae'], 2)} | {fmt(t['forces_mae'], 2)} | "
            f"{fmt(t['energy_rmse'], 2)} | {fmt(t['forces_rmse'], 2)} | {r['epochs']} | "
            f"{r['best_epoch']} | {r['parameters']:,} | {r['minutes']:g} |"
        )
    if results:
        lines += time_rows(results)
    for machine in dict.fromkeys(r["machine"] for r in results.values()):
        lines += ["", f"Machine: {machine}."]
    lines += ["", "## Settings", ""]
    for model in MODELS:
        r = results.get(model)
        if model == "mace":
            text = mace_text()
        else:
            text = (
                f"{preset_text(PRESETS[model])}; tested by tensorpot itself at the end of the "
                "run (`errors.md`); the budget counts from the start of the run, after "
                "tensorpot's imports"
            )
        lines.append(f"- {LABELS[model]}: {text}.")
        if r is not None:
            lines += ["", "  ```", f"  {r['settings']['command']}", "  ```", ""]
    if results:
        lines += valid_rows(results)
        cpu = "; ".join(f"{LABELS[m]}: {r['cpu_of']}" for m, r in results.items())
        lines += ["", f"CPU time is that of {cpu}."]
    return re.sub(r"\n{3,}", "\n\n", "\n".join([*lines, ""]))


def time_rows(results: dict[str, dict]) -> list[str]:
    lines = [
        "",
        "Time and load: training stopped at (minutes after the start of the process), wall "
        "time of the whole step (training, export, test), CPU time (of what: below), load "
        "average (1, 5, 15 min) before the start and after the test.",
        "",
        "| model | started | stopped at (min) | wall (min) | CPU (min) | load before | "
        "load after |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, r in results.items():
        lines.append(
            f"| {LABELS[model]} | {r['started']} | {fmt(r['stopped_min'], 2)} | "
            f"{fmt(r['wall_min'], 2)} | {fmt(r['cpu_min'], 2)} | {loads(r['load_before'])} | "
            f"{loads(r['load_after'])} |"
        )
    return lines


def valid_rows(results: dict[str, dict]) -> list[str]:
    lines = [
        "",
        "Validation errors of the tested models (the 50 validation frames):",
        "",
        "| model | E-MAE (meV) | F-MAE (meV/Å) | E-RMSE (meV) | F-RMSE (meV/Å) |",
        "|---|---|---|---|---|",
    ]
    for model, r in results.items():
        v = r["valid"]
        lines.append(
            f"| {LABELS[model]} | {fmt(v['energy_mae'], 2)} | {fmt(v['forces_mae'], 2)} | "
            f"{fmt(v['energy_rmse'], 2)} | {fmt(v['forces_rmse'], 2)} |"
        )
    return lines


def read_results(work: Path, models: tuple[str, ...]) -> dict[str, dict]:
    """``{model: result}`` of the models with a ``<work>/<model>/result.json``."""
    results = {}
    for model in models:
        path = work / model / "result.json"
        if path.exists():
            results[model] = json.loads(path.read_text(encoding="utf-8"))
    return results


def save_result(folder: Path, result: dict) -> Path:
    """Write ``<folder>/result.json`` whole or not at all."""
    path = folder / "result.json"
    path.with_suffix(".tmp").write_text(json.dumps(result, indent=2), encoding="utf-8")
    path.with_suffix(".tmp").replace(path)
    return path


def write_doc(work: Path, doc: Path, test: Path, minutes: float) -> None:
    results = read_results(work, MODELS)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(doc_text(results, test, minutes), encoding="utf-8")
    log(f"wrote {doc} ({', '.join(results) or 'no results yet'})")


# ----------------------------------------------------------------------------- main


def clear(model: str, folder: Path, minutes: float, overwrite: bool) -> bool:
    """Make ``folder`` ready for a fresh run of ``model``; False: it has a result to keep."""
    result = folder / "result.json"
    if result.exists():
        old = json.loads(result.read_text(encoding="utf-8"))
        if not overwrite:
            if old["minutes"] != minutes:
                raise SystemExit(
                    f"{model}: {result} has a {old['minutes']:g}-minute result, not "
                    f"{minutes:g}: pass --overwrite to replace it, or choose another --work"
                )
            log(f"{model}: result present ({result}): skipped")
            return False
        log(f"{model}: --overwrite: removing the finished run in {folder}")
        shutil.rmtree(folder)
    elif folder.exists():
        log(
            f"{model}: {folder} holds an unfinished run (no result.json): restarting it from "
            "scratch (a resumed run would get a fresh budget); its files are removed"
        )
        shutil.rmtree(folder)
    return True


def arguments(
    description: str, models: tuple[str, ...], work: Path, doc: Path
) -> argparse.ArgumentParser:
    """The options of a same-budget script: budget, models, work folder, doc, overwrite."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--minutes", type=float, default=20.0, help="budget B per model")
    parser.add_argument("--only", choices=models, action="append", help="this model (repeatable)")
    parser.add_argument("--work", type=Path, default=work, help=f"default {shown(work)}")
    parser.add_argument("--doc", type=Path, default=doc, help=f"default {shown(doc)}")
    parser.add_argument("--overwrite", action="store_true", help="rerun models with a result")
    return parser


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], MODELS, WORK, DOC)
    parser.add_argument("--doc-only", action="store_true", help="rewrite the doc, train nothing")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stops the running child too
    command = shlex.join(["python", *sys.argv])
    work = args.work.resolve()
    train, valid, test = data_files()
    models = [m for m in MODELS if args.only is None or m in args.only]
    if not args.doc_only:
        ensure_splits(train, valid)
        for model in models:
            folder = work / model
            if not clear(model, folder, args.minutes, args.overwrite):
                continue
            started = utc_now()
            if model == "mace":
                mace_test = test_xyz(work, test)
                result = run_mace(folder, args.minutes, train, valid, mace_test)
            else:
                result = run_tensorpot(model, folder, args.minutes, test)
            result.update(
                model=model,
                minutes=args.minutes,
                threads=THREADS,
                started=started,
                finished=utc_now(),
                command=command,
                machine=machine_line(),
            )
            path = save_result(folder, result)
            t = result["test"]
            log(
                f"{model}: {result['epochs']} epochs, test E-MAE {t['energy_mae']:.2f} meV, "
                f"F-MAE {t['forces_mae']:.2f} meV/Å ({path})"
            )
            write_doc(work, args.doc, test, args.minutes)
    write_doc(work, args.doc, test, args.minutes)


if __name__ == "__main__":
    main()
