"""ICTP with and without FreeCG's coupling of abstract edges on 3BPA 450/50, the same wall-clock
budget each, tested at 300 K and 600 K.

The 3BPA counterpart of ``benchmarks/same_budget_aspirin.py`` (whose running, resuming and
checks it reuses): each model trains for B minutes (default 20) with 2 threads, one after the
other, on the presets ``configs/<model>-3bpa-450-20min.yaml`` (the paper's protocol: 450 train
+ 50 validation frames of ``train_300K``, float64, isolated-atom E0s), then tensorpot tests its
best-validation EMA model on ``test_300K`` and ``test_600K`` itself. Results land in
``<work>/<model>/result.json`` (a model with one is skipped unless ``--overwrite``), and the
Markdown table (``--doc``) is rewritten after every model.

    setsid nohup python benchmarks/same_budget_3bpa.py > runs/3bpa_freecg_same_budget.out 2>&1 &

    python benchmarks/same_budget_3bpa.py                                 # both, 20 min each
    python benchmarks/same_budget_3bpa.py --minutes 0.3 --work /tmp/sb3 --doc /tmp/sb3.md
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

import yaml

from same_budget_aspirin import (
    THREADS,
    arguments,
    clear,
    fmt,
    log,
    machine_line,
    preset_text,
    read_results,
    run_tensorpot,
    save_result,
    shown,
    utc_now,
)

REPO = Path(__file__).resolve().parents[1]
MODELS = ("ictp", "ictp-freecg")
LABELS = {"ictp": "ICTP", "ictp-freecg": "ICTP + FreeCG (Cartesian, l_max 3)"}
PRESETS = {m: REPO / "configs" / f"{m}-3bpa-450-20min.yaml" for m in MODELS}
WORK = REPO / "runs" / "3bpa_freecg_same_budget"
DOC = REPO / "docs" / "benchmarks" / "3bpa_freecg_same_budget.md"


def test_files() -> list[Path]:
    """The test files of the presets (the two agree; checked)."""
    found = set()
    for preset in PRESETS.values():
        raw = yaml.safe_load(preset.read_text(encoding="utf-8"))
        found.add(tuple((preset.parent / f).resolve() for f in raw["test_files"]))
    if len(found) != 1:
        raise SystemExit("the presets differ in their test files")
    return list(found.pop())


def doc_text(results: dict[str, dict], tests: list[Path], minutes: float) -> str:
    """The Markdown page from the results present (``{model: result}``)."""
    commands = list(dict.fromkeys(r["command"] for r in results.values()))
    if not commands:
        commands = [shlex.join(["python", shown(Path(__file__)), f"--minutes={minutes:g}"])]
    heads = " | ".join(f"{t.stem} E-RMSE (meV) | {t.stem} F-RMSE (meV/Å)" for t in tests)
    lines = [
        f"# 3BPA 450/50: ICTP with and without FreeCG's coupling, {minutes:g} minutes each",
        "",
        "Written by `benchmarks/same_budget_3bpa.py` from the results present; the command:",
        "",
        "```",
        *commands,
        "```",
        "",
        "Each model trains alone, one process with 2 threads, until the end of the first epoch "
        "that ends after the budget; its best-validation EMA model is tested. Energy errors "
        "per molecule (meV), force errors per component (meV/Å).",
        "",
        f"| model | {heads} | epochs | best epoch | parameters |",
        "|---|" + "---|" * (2 * len(tests) + 3),
    ]
    for model in MODELS:
        r = results.get(model)
        if r is None:
            lines.append(f"| {LABELS[model]} | not run yet |" + " |" * (2 * len(tests) + 2))
            continue
        cells = " | ".join(
            f"{fmt(r['tests'][t.stem]['energy_rmse'], 2)} | "
            f"{fmt(r['tests'][t.stem]['forces_rmse'], 2)}"
            for t in tests
        )
        lines.append(
            f"| {LABELS[model]} | {cells} | {r['epochs']} | {r['best_epoch']} | "
            f"{r['parameters']:,} |"
        )
    for machine in dict.fromkeys(r["machine"] for r in results.values()):
        lines += ["", f"Machine: {machine}."]
    lines += ["", "## Settings", ""]
    lines += [f"- {LABELS[m]}: {preset_text(PRESETS[m])}." for m in MODELS]
    return "\n".join([*lines, ""])


def write_doc(work: Path, doc: Path, tests: list[Path], minutes: float) -> None:
    results = read_results(work, MODELS)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(doc_text(results, tests, minutes), encoding="utf-8")
    log(f"wrote {doc} ({', '.join(results) or 'no results yet'})")


def main() -> None:
    args = arguments(__doc__.splitlines()[0], MODELS, WORK, DOC).parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stops the running child too
    command = shlex.join(["python", *sys.argv])
    work, tests = args.work.resolve(), test_files()
    for model in [m for m in MODELS if args.only is None or m in args.only]:
        folder = work / model
        if not clear(model, folder, args.minutes, args.overwrite):
            continue
        started = utc_now()
        result = run_tensorpot(
            model, folder, args.minutes, tests[0], PRESETS[model], tuple(tests[1:])
        )
        result.update(
            model=model, minutes=args.minutes, threads=THREADS, started=started,
            finished=utc_now(), command=command, machine=machine_line(),
        )  # fmt: skip
        save_result(folder, result)
        write_doc(work, args.doc, tests, args.minutes)
    write_doc(work, args.doc, tests, args.minutes)


if __name__ == "__main__":
    main()
