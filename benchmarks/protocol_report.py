"""The report of the accuracy protocols of ``protocols.py``: test errors, tables, curves.

:func:`report` tests every job's best-validation model on its test files (tensorpot's jobs through
``tensorpot.evaluation.evaluate``, MACE through ``mace_eval_configs``; one metric code for both),
writes each tensorpot model's learning curves (PNG), run config, error table and training command
beside it in ``<pretrained>/<job>/``, keeps the results in ``<pretrained>/results.json`` and
writes the table beside the published numbers to ``docs/benchmarks/protocols.md``, with the
validation errors of tensorpot and MACE against the hours trained
(``docs/benchmarks/protocols-3bpa-curves.png``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import mace_runner
from protocol_jobs import (
    PRETRAINED,
    PROTOCOLS,
    REPO,
    Job,
    fixed_overrides,
    log,
    log_rows,
    mace_run,
    read_progress,
    restore,
    save,
    split_3bpa,
)
from tensorpot.config import PATH_KEYS, load_run_config
from tensorpot.data.readers import read_configurations
from tensorpot.evaluation.evaluate import evaluate
from tensorpot.evaluation.plots import plot_learning_curves
from tensorpot.models import load_model
from train_3bpa_vs_mace import error_metrics, machine_line, reference

DOC = REPO / "docs" / "benchmarks" / "protocols.md"
#: ``<protocol>``'s validation errors of tensorpot and MACE against the hours trained.
CURVES = "protocols-{protocol}-curves.png"
#: Test frames in the repository, per model-name stem: the examples of each model's README.
BUNDLED = {
    "3bpa": "data/3bpa/test_300K_first200.xyz",
    "rmd17-aspirin": "data/rmd17/rmd17_aspirin_test_01_first100.npz",
    "rmd17-ethanol": "data/rmd17/rmd17_ethanol_test_01_first100.npz",
}

#: Published numbers (MACE paper; averages over several seeds): metric -> value, per job.
PUBLISHED = {
    "rmd17-aspirin-50": ("MACE, N = 50", {"energy_mae": 17.0, "forces_mae": 43.9}),
    "rmd17-ethanol-50": ("MACE, N = 50", {"energy_mae": 6.7, "forces_mae": 32.6}),
    "rmd17-aspirin-950": ("MACE, N = 1000", {"energy_mae": 2.2, "forces_mae": 6.6}),
    "rmd17-ethanol-950": ("MACE, N = 1000", {"energy_mae": 0.4, "forces_mae": 2.1}),
    "3bpa-ictp": ("MACE, 300 K", {"test_300K/forces_rmse": 8.8}),
}


def test_files(job: Job) -> dict[str, Path]:
    preset = load_run_config(job.preset, job.overrides)
    return {Path(p).stem: Path(p) for p in preset.test_files}


def report_tensorpot(
    job: Job, root: Path, protocol: str, pretrained: Path
) -> dict[str, Any] | None:
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
    target = pretrained / job.name
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


def plot_against_mace(root: Path, protocol: str, folder: Path) -> Path | None:
    """The validation curves of a protocol's tensorpot and MACE jobs against the hours trained
    (the same validation frames, one core each), as ``<folder>/<CURVES>``."""
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
    path = folder / CURVES.format(protocol=protocol)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(
    root: Path,
    budget_hours: float,
    chosen: list[str],
    pretrained: Path = PRETRAINED,
    doc: Path = DOC,
) -> None:
    """Save, then test the jobs of the ``chosen`` protocols; the table keeps the other
    protocols' results from ``<pretrained>/results.json``."""
    for protocol in chosen:
        restore(root, protocol, pretrained)
    save(root, pretrained)
    kept = pretrained / "results.json"
    results = json.loads(kept.read_text(encoding="utf-8")) if kept.exists() else {}
    for protocol in chosen:
        hours = read_progress(root, protocol)["hours"]
        for job in PROTOCOLS[protocol]:
            if job.mace:
                found = report_mace(job, root, protocol)
            else:
                found = report_tensorpot(job, root, protocol, pretrained)
            if found is not None:
                results[job.name] = {**found, "protocol": protocol, "hours": hours}
                if not job.mace:
                    write_readme(job.name, results[job.name], pretrained)
        plot_against_mace(root, protocol, doc.parent)
    kept.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    doc.write_text(document(results, budget_hours, doc.parent), encoding="utf-8")
    log(f"wrote {doc} and {pretrained}")


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


def document(results: dict[str, dict[str, Any]], budget_hours: float, folder: Path) -> str:
    """The protocols' tables as Markdown; ``folder`` holds the curves beside it."""
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
        if (folder / against).exists():
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


def write_readme(name: str, result: dict[str, Any], pretrained: Path) -> None:
    """``<pretrained>/<name>/README.md``: what the model is, how it was trained, its errors."""
    protocol = result["protocol"]
    (job,) = [j for j in PROTOCOLS[protocol] if j.name == name]
    command = shlex.join(["tensorpot", "train", str(job.preset.relative_to(REPO)), *[
        o.replace(str(REPO.parent), "..") for o in job.overrides]])  # fmt: skip
    data = ""
    if protocol == "3bpa":
        _, train_idx, valid_idx = split_3bpa()
        split = {"file": "train_300K.xyz", "train": train_idx, "valid": valid_idx}
        (pretrained / name / "split.json").write_text(json.dumps(split) + "\n", encoding="utf-8")
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
    (pretrained / name / "README.md").write_text(text, encoding="utf-8")
