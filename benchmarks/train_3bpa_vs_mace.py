"""Train tensorpot ICTP and MACE on 3BPA with the same wall-clock budget, and test both.

``--protocol 3bpa`` (default): one seeded 450/50 split of ``3bpa/train_300K.xyz`` is written to
the work folder (byte-exact copies of the frames), so both codes see the same structures. ICTP
(``configs/ictp-3bpa-450.yaml``: r_max 5, max_L 2, max_ell 3, correlation 3, sym basis, float64,
batch 5, lr 0.01, E:F loss weights 1:10, EMA 0.99, the 3BPA isolated-atom E0s) and MACE
(``mace_run_train``: ScaleShiftMACE, hidden irreps ``Cx0e+Cx1o+Cx2e`` with the same C, the same
settings) start together, one process and one thread each. The budget B starts for both at
that moment; each stops at the end of the first epoch that ends after B minutes (ICTP through
``time_budget_minutes``, MACE by SIGTERM from this script). Both keep the best-validation EMA
model. Both are then tested on the full ``test_300K.xyz`` and ``test_600K.xyz``: ICTP through
``tensorpot.evaluation``, MACE through ``mace_eval_configs``; the errors of both come from
:func:`error_metrics` of this script against the same reference labels.

``--protocol rmd17``: ICTP alone (``configs/ictp-rmd17-50.yaml``) on rMD17 aspirin, 50 training
+ 50 validation structures of ``train_01``, tested on the 1000 structures of ``test_01``.

    python benchmarks/train_3bpa_vs_mace.py --minutes 20 --channels 16
    python benchmarks/train_3bpa_vs_mace.py --protocol rmd17 --minutes 20 --channels 16
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import platform
import resource
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import mace_runner
import tensorpot
from tensorpot.config import load_run_config
from tensorpot.data.readers import read_configurations
from tensorpot.data.split import split_train_valid
from tensorpot.evaluation.evaluate import evaluate
from tensorpot.models import load_model
from tensorpot.training import train

REPO = Path(__file__).resolve().parents[1]
PRESETS = {
    "3bpa": REPO / "configs" / "ictp-3bpa-450.yaml",
    "rmd17": REPO / "configs" / "ictp-rmd17-50.yaml",
}
DOCS = {
    "3bpa": REPO / "docs" / "benchmarks" / "3bpa_same_budget.md",
    "rmd17": REPO / "docs" / "benchmarks" / "rmd17_aspirin_50.md",
}


# ----------------------------------------------------------------------------- metrics


def error_metrics(
    ref_energy: np.ndarray,
    pred_energy: np.ndarray,
    ref_forces: list[np.ndarray],
    pred_forces: list[np.ndarray],
) -> dict[str, float]:
    """MAE and RMSE of energies per structure (meV), per atom (meV/atom), force components (meV/Å).

    The one metric code of this benchmark, used for every model.
    """
    n_atoms = np.array([len(f) for f in ref_forces], dtype=float)
    if [len(f) for f in pred_forces] != [len(f) for f in ref_forces]:
        raise ValueError("predicted and reference forces have different atom counts")
    de = 1e3 * (np.asarray(pred_energy, dtype=float) - np.asarray(ref_energy, dtype=float))
    df = 1e3 * (np.concatenate(pred_forces) - np.concatenate(ref_forces)).ravel()
    return {
        "energy_mae": float(np.mean(np.abs(de))),
        "energy_rmse": float(np.sqrt(np.mean(de**2))),
        "energy_mae_per_atom": float(np.mean(np.abs(de / n_atoms))),
        "energy_rmse_per_atom": float(np.sqrt(np.mean((de / n_atoms) ** 2))),
        "forces_mae": float(np.mean(np.abs(df))),
        "forces_rmse": float(np.sqrt(np.mean(df**2))),
    }


def reference(path: Path, cap: int | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Reference energies (eV) and forces (eV/Å) as tensorpot's readers give them."""
    configs = read_configurations(path)[:cap]
    return np.array([c.energy for c in configs]), [np.array(c.forces) for c in configs]


# ----------------------------------------------------------------------------- data


def xyz_frames(path: Path) -> list[str]:
    """The frames of an extended-XYZ file as their exact text."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    frames, k = [], 0
    while k < len(lines):
        if not lines[k].strip():
            k += 1
            continue
        n = int(lines[k])
        frames.append("".join(lines[k : k + n + 2]))
        k += n + 2
    return frames


def write_frames(frames: list[str], path: Path) -> Path:
    path.write_text("".join(frames), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- ICTP child


def run_ictp(job: dict[str, Any]) -> None:
    """Train and test ICTP in this (spawned) process; writes ``ictp_result.json`` + predictions.

    The time budget counts from ``job["launch"]``, the moment MACE was started as well.
    """
    torch.set_num_threads(1)
    folder = Path(job["folder"])
    spent = (time.time() - job["launch"]) / 60.0
    budget = max(job["minutes"] - spent, 1e-3)
    overrides = [*job["overrides"], f"time_budget_minutes={budget}", "threads=1"]
    config = load_run_config(job["preset"], overrides)
    result = train(config)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    log = Path(result.history_path)
    stopped = log.stat().st_mtime - job["launch"]
    with open(log, encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("valid_loss")]
    best = min(rows, key=lambda r: float(r["valid_loss"]))
    model = load_model(result.model_path)
    tables = {}
    for name, (path, cap) in job["eval_sets"].items():
        configs = read_configurations(path)[:cap]
        table, preds = evaluate(model, configs, batch_size=10)
        tables[name] = table
        np.savez(
            folder / f"ictp_pred_{name}.npz",
            energy=np.array([p.energy for p in preds]),
            forces=np.concatenate([p.forces for p in preds]),
            counts=np.array([len(p.forces) for p in preds]),
        )
    info = {
        "epochs": result.epochs_run,
        "best_epoch": int(best["epoch"]),
        "parameters": sum(p.numel() for p in model.parameters()),
        "stopped_min": stopped / 60.0,
        "cpu_min": (usage.ru_utime + usage.ru_stime) / 60.0,
        "budget_given_min": budget,
        "model_path": str(result.model_path),
        "tensorpot_tables": tables,
        "threads": torch.get_num_threads(),
    }
    (folder / "ictp_result.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


def start_ictp(job: dict[str, Any]) -> multiprocessing.Process:
    process = multiprocessing.get_context("spawn").Process(target=run_ictp, args=(job,))
    process.start()
    return process


def ictp_predictions(folder: Path, name: str) -> tuple[np.ndarray, list[np.ndarray]]:
    data = np.load(folder / f"ictp_pred_{name}.npz")
    return data["energy"], np.split(data["forces"], np.cumsum(data["counts"])[:-1])


# ----------------------------------------------------------------------------- reporting


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"{cpu}, {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
        f"torch {torch.__version__}, tensorpot {tensorpot.__version__}"
    )


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def prepare_folder(folder: Path, overwrite: bool) -> None:
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise SystemExit(f"{folder} is not empty: pass --overwrite or choose --work")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)


def ictp_overrides(args: argparse.Namespace, folder: Path) -> list[str]:
    return [
        f"output_dir={folder / 'ictp'}",
        "name=ictp",
        f"seed={args.seed}",
        f"model.num_channels={args.channels}",
        f"model.dtype={args.dtype}",
        "progress_bar=false",
        "test_files=[]",
    ]


def wait_ictp(process: multiprocessing.Process, folder: Path) -> dict[str, Any]:
    process.join()
    path = folder / "ictp_result.json"
    if process.exitcode != 0 or not path.exists():
        raise SystemExit(f"the ICTP process failed (exit code {process.exitcode})")
    return json.loads(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- 3BPA


def run_3bpa(args: argparse.Namespace, command: str) -> str:
    folder = Path(args.work or REPO / "runs" / f"3bpa_same_budget_{args.minutes:g}min").resolve()
    prepare_folder(folder, args.overwrite)
    preset = load_run_config(PRESETS["3bpa"])
    source = Path(preset.train_file)
    frames = xyz_frames(source)
    train_idx, valid_idx = split_train_valid(
        list(range(len(frames))), args.n_valid / len(frames), args.seed
    )
    train_file = write_frames([frames[k] for k in train_idx], folder / "train.xyz")
    valid_file = write_frames([frames[k] for k in valid_idx], folder / "valid.xyz")
    log(f"split {source}: {len(train_idx)} train, {len(valid_idx)} valid (seed {args.seed})")
    tests: dict[str, Path] = {}
    for path in map(Path, preset.test_files):
        name = path.stem
        if args.max_test_frames is None:
            tests[name] = path
        else:
            tests[name] = write_frames(xyz_frames(path)[: args.max_test_frames], folder / path.name)
    eval_sets = {"valid": valid_file, **tests}
    e0s = {int(k): float(v) for k, v in preset.E0s.items()}
    mace = mace_runner.MaceRun(
        mace_runner.MaceSettings.from_preset(
            preset, train_file, valid_file, args.channels, args.seed
        ),
        folder / "mace",
    )
    job = {
        "preset": str(PRESETS["3bpa"]),
        "overrides": [
            *ictp_overrides(args, folder),
            f"train_file={train_file}",
            f"valid_file={valid_file}",
        ],
        "minutes": args.minutes,
        "folder": str(folder),
        "eval_sets": {name: (str(path), None) for name, path in eval_sets.items()},
    }
    load_start = os.getloadavg()
    launch = time.time()
    job["launch"] = launch
    mace.start(launch)
    ictp = start_ictp(job)
    log(f"started MACE (pid {mace.proc.pid}) and ICTP (pid {ictp.pid}), budget {args.minutes} min")
    try:
        mace.stop_after_deadline(launch + 60.0 * args.minutes)
        epochs = mace.epochs_logged()
        log(
            f"MACE stopped after {mace.stopped_at / 60:.2f} min, {len(epochs)} epochs "
            f"(exit code {mace.return_code})"
        )
        best_epoch, mace_table = mace.export_best()
        log(f"MACE best checkpoint: epoch {best_epoch} (0-based); model {mace.model_path}")
        mace_preds = {}
        for name, path in eval_sets.items():
            mace_preds[name] = mace_runner.predict(
                mace.model_path, path, folder / "mace" / f"pred_{name}.xyz"
            )
            log(f"MACE predicted {name}")
        info = wait_ictp(ictp, folder)
    except BaseException:
        mace.kill()
        if ictp.is_alive():
            ictp.terminate()
        raise
    load_end = os.getloadavg()
    log(f"ICTP done: {info['epochs']} epochs, stopped after {info['stopped_min']:.2f} min")

    rows: dict[str, dict[str, dict[str, float]]] = {"ICTP": {}, "MACE": {}}
    check = 0.0
    for name, path in eval_sets.items():
        ref_e, ref_f = reference(path, None)
        pred_e, pred_f = ictp_predictions(folder, name)
        rows["ICTP"][name] = error_metrics(ref_e, pred_e, ref_f, pred_f)
        rows["MACE"][name] = error_metrics(ref_e, mace_preds[name][0], ref_f, mace_preds[name][1])
        theirs = info["tensorpot_tables"][name]
        check = max(check, *(abs(rows["ICTP"][name][k] - theirs[k]) for k in rows["ICTP"][name]))
    log(f"largest difference to tensorpot's own metric code (ICTP): {check:.2e} meV")

    import mace as _mace  # before loading the pickled MACE model (and e3nn)

    mace_model = torch.load(mace.model_path, map_location="cpu", weights_only=False)
    mace_params = sum(p.numel() for p in mace_model.parameters())
    mace_cpu = None if mace.cpu_seconds is None else mace.cpu_seconds / 60.0
    meta = {
        "ICTP": (info["epochs"], info["best_epoch"], info["parameters"], info["stopped_min"],
                 info["cpu_min"]),
        "MACE": (len(epochs), best_epoch + 1, mace_params, mace.stopped_at / 60.0, mace_cpu),
    }  # fmt: skip
    t300, t600 = "test_300K", "test_600K"
    n300 = len(reference(tests[t300], None)[0])
    n600 = len(reference(tests[t600], None)[0])
    lines = [
        f"# 3BPA: tensorpot ICTP vs MACE, same wall-clock budget ({args.minutes:g} min)",
        "",
        "Produced by one run of `benchmarks/train_3bpa_vs_mace.py`:",
        "",
        "```",
        command,
        "```",
        "",
        f"Training: {len(train_idx)} structures, validation {len(valid_idx)} (one split of "
        f"`3bpa/train_300K.xyz`, seed {args.seed}, the same files for both codes). Test: "
        f"`test_300K.xyz` ({n300} structures) and `test_600K.xyz` ({n600} structures). "
        f"Budget {args.minutes:g} min of wall-clock time for each, both running at the same "
        "time, one process and one thread each; each model is the best-validation EMA model.",
        "",
        "| model | E-RMSE 300 K (meV) | F-RMSE 300 K (meV/Å) | E-RMSE 600 K (meV) | "
        "F-RMSE 600 K (meV/Å) | epochs | best epoch | parameters | budget (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, (n_ep, best, params, _, _) in meta.items():
        r = rows[model]
        lines.append(
            f"| {model} | {fmt(r[t300]['energy_rmse'])} | {fmt(r[t300]['forces_rmse'])} | "
            f"{fmt(r[t600]['energy_rmse'])} | {fmt(r[t600]['forces_rmse'])} | {n_ep} | {best} | "
            f"{params:,} | {args.minutes:g} |"
        )
    lines += [
        "",
        "All errors (meV, meV/atom, meV/Å), the same metric code for both models:",
        "",
        "| model | set | E-MAE | E-RMSE | E-MAE/atom | E-RMSE/atom | F-MAE | F-RMSE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model in rows:
        for name, r in rows[model].items():
            lines.append(
                f"| {model} | {name} | {fmt(r['energy_mae'], 2)} | {fmt(r['energy_rmse'], 2)} | "
                f"{fmt(r['energy_mae_per_atom'], 3)} | {fmt(r['energy_rmse_per_atom'], 3)} | "
                f"{fmt(r['forces_mae'], 2)} | {fmt(r['forces_rmse'], 2)} |"
            )
    lines += [
        "",
        "Time (minutes since the common start): training stopped at, CPU time of the training "
        "process (ICTP's includes its final error table on train/valid):",
        "",
        "| model | stopped at (min) | CPU time (min) |",
        "|---|---|---|",
    ]
    for model, (_, _, _, stopped, cpu) in meta.items():
        lines.append(f"| {model} | {fmt(stopped, 2)} | {fmt(cpu, 2)} |")
    lines += [
        "",
        f"Load average (1, 5, 15 min) at the start: {', '.join(f'{x:.2f}' for x in load_start)};"
        f" at the end: {', '.join(f'{x:.2f}' for x in load_end)}. Machine: {machine_line()}, "
        f"mace-torch {_mace.__version__}.",
        "",
        "## Settings",
        "",
        f"- both: r_max {preset.model['r_max']}, 2 interactions, max_L {preset.model['max_L']} "
        f"(MACE hidden irreps `{mace.settings.hidden_irreps}`), max_ell "
        f"{preset.model['max_ell']}, correlation {preset.model['correlation']}, "
        f"{args.channels} channels, 8 Bessel functions, polynomial envelope p = 5, radial MLP "
        f"[64, 64, 64], readout MLP 16, {args.dtype}; E0s {e0s} eV; scale = RMS of the "
        "training forces, shift = mean per-atom energy residual (MACE: `ScaleShiftMACE`); "
        f"batch {preset.batch_size}, AMSGrad Adam, lr {preset.lr}, weight decay "
        f"{preset.weight_decay}, ReduceLROnPlateau (factor {preset.lr_factor}, patience "
        f"{preset.scheduler_patience}), EMA {preset.ema_decay}, gradient clipping "
        f"{preset.clip_grad}, validation every epoch, seed {args.seed}.",
        f"- loss: both use MACE's weighted loss, energy_weight * mean((dE/N)^2) + forces_weight"
        f" * mean(dF^2) per batch; tensorpot's `energy_weight`/`forces_weight` "
        f"({preset.energy_weight}/{preset.forces_weight}) are passed unchanged as MACE's "
        f"`--energy_weight`/`--forces_weight` (`--loss weighted`).",
        "- ICTP: `configs/ictp-3bpa-450.yaml` with `product_basis: sym`, overrides "
        f"`{' '.join(job['overrides'][:6])}` and `time_budget_minutes` = B minus the time from "
        "the common start to the ICTP process's start.",
        "- MACE: `mace_run_train` with a large `--max_num_epochs`, stopped with SIGTERM 3 s "
        "after the validation line of the first epoch that ended after B minutes; its kept "
        "(best-validation) checkpoint was turned into a model by rerunning `mace_run_train "
        "--restart_latest --max_num_epochs <that epoch>` (no further training), then "
        "`mace_eval_configs` predicted the test sets.",
        "- epochs are counted from 1 for both (MACE logs them from 0).",
        "",
        "MACE's own error table (its metric code) of the exported model on train and valid, "
        "for comparison with the `valid` rows above:",
        "",
        "```",
        mace_table,
        "```",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- rMD17


def run_rmd17(args: argparse.Namespace, command: str) -> str:
    folder = Path(args.work or REPO / "runs" / f"rmd17_aspirin_50_{args.minutes:g}min").resolve()
    prepare_folder(folder, args.overwrite)
    preset = load_run_config(PRESETS["rmd17"])
    test = Path(preset.test_files[0])
    cap = args.max_test_frames
    job = {
        "preset": str(PRESETS["rmd17"]),
        "overrides": ictp_overrides(args, folder),
        "minutes": args.minutes,
        "folder": str(folder),
        "eval_sets": {"test": (str(test), cap)},
    }
    load_start = os.getloadavg()
    job["launch"] = time.time()
    ictp = start_ictp(job)
    log(f"started ICTP (pid {ictp.pid}), budget {args.minutes} min")
    info = wait_ictp(ictp, folder)
    load_end = os.getloadavg()
    log(f"ICTP done: {info['epochs']} epochs, stopped after {info['stopped_min']:.2f} min")
    ref_e, ref_f = reference(test, cap)
    train_pool, valid = split_train_valid(
        read_configurations(preset.train_file), preset.valid_fraction, args.seed
    )
    n_train = min(len(train_pool), preset.max_train_frames or len(train_pool))
    pred_e, pred_f = ictp_predictions(folder, "test")
    r = error_metrics(ref_e, pred_e, ref_f, pred_f)
    theirs = info["tensorpot_tables"]["test"]
    check = max(abs(r[k] - theirs[k]) for k in r)
    log(f"largest difference to tensorpot's own metric code: {check:.2e} meV")
    lines = [
        f"# rMD17 aspirin, 50 training structures: tensorpot ICTP, {args.minutes:g} min budget",
        "",
        "Produced by one run of `benchmarks/train_3bpa_vs_mace.py`:",
        "",
        "```",
        command,
        "```",
        "",
        f"Training: {n_train} structures, validation {len(valid)}, both drawn (seed {args.seed})"
        f" from `{Path(preset.train_file).name}`; test: `{test.name}` ({len(ref_e)} structures). "
        "Energies in kcal/mol in the files, converted to eV by tensorpot's reader. One process, "
        "one thread; the best-validation EMA model.",
        "",
        "| model | E-MAE (meV) | F-MAE (meV/Å) | E-RMSE (meV) | F-RMSE (meV/Å) | epochs | "
        "best epoch | parameters | budget (min) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| ICTP | {fmt(r['energy_mae'], 2)} | {fmt(r['forces_mae'], 2)} | "
        f"{fmt(r['energy_rmse'], 2)} | {fmt(r['forces_rmse'], 2)} | {info['epochs']} | "
        f"{info['best_epoch']} | {info['parameters']:,} | {args.minutes:g} |",
        "",
        f"Training stopped at {info['stopped_min']:.2f} min; CPU time {info['cpu_min']:.2f} min. "
        f"Load average (1, 5, 15 min) at the start: {', '.join(f'{x:.2f}' for x in load_start)};"
        f" at the end: {', '.join(f'{x:.2f}' for x in load_end)}. Machine: {machine_line()}.",
        "",
        "Settings: `configs/ictp-rmd17-50.yaml` (r_max 5, max_L 2, max_ell 3, correlation 3, "
        "sym basis, 2 interactions, batch 5, lr 0.01, E:F weights 1:10, EMA 0.99, E0s null, "
        f"i.e. the mean per-atom energy as shift) with overrides `{' '.join(job['overrides'])}` "
        "and `time_budget_minutes` = the budget minus the process start-up, `threads=1`.",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=["3bpa", "rmd17"], default="3bpa")
    parser.add_argument("--minutes", type=float, required=True, help="budget B (wall clock)")
    parser.add_argument("--channels", type=int, default=16, help="C of both models")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--n-valid", type=int, default=50, help="3BPA validation structures")
    parser.add_argument("--max-test-frames", type=int, help="test on the first N only")
    parser.add_argument("--work", help="work folder (default: runs/<protocol>_...)")
    parser.add_argument("--doc", help="Markdown output (default: docs/benchmarks/...)")
    parser.add_argument("--overwrite", action="store_true", help="empty a used work folder")
    args = parser.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    run = run_3bpa if args.protocol == "3bpa" else run_rmd17
    text = run(args, command)
    doc = Path(args.doc) if args.doc else DOCS[args.protocol]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")
    print("\n" + text)
    log(f"wrote {doc}")


if __name__ == "__main__":
    main()
