"""The ``tensorpot`` command: ``train``, ``preprocess``, ``eval``, ``md``, ``plot``, ``bench``
and ``export``.

It parses arguments and calls library functions. A :class:`~tensorpot.errors.TensorPotError`
or a missing/existing file is reported as one line ``tensorpot: error: <message>`` with exit
code 2 (``--debug`` re-raises it with its traceback); Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence

from tensorpot.allocator import retain_freed_memory
from tensorpot.errors import TensorPotError

USER_ERRORS = (TensorPotError, FileNotFoundError, FileExistsError, IsADirectoryError)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    from tensorpot.benchmarking.adapters import add_size_arguments

    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    memory = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    memory.add_argument(
        "--retain-memory",
        action="store_true",
        help="let glibc keep freed memory in the process (tensorpot.allocator): pays for "
        "large periodic cells; the process keeps its peak memory",
    )
    parser = argparse.ArgumentParser(
        prog="tensorpot",
        description="Train and evaluate machine-learned interatomic potentials.",
        allow_abbrev=False,
    )
    from tensorpot import __version__

    parser.add_argument("--version", action="version", version=f"tensorpot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        parents=[common, memory],
        allow_abbrev=False,
        help="train a model from a YAML config",
        description="Train a model. Overrides: key=value or --key=value (e.g. "
        "model.num_channels=16), applied in order after the file.",
    )
    train.add_argument("config", help="run config (YAML)")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")

    pre = sub.add_parser(
        "preprocess",
        parents=[common],
        allow_abbrev=False,
        help="turn a data file into a store that training streams from",
        description="Write a data file (default: the config's train_file), read with the "
        "config's keys, with every neighbour list of the model's r_max, to an LMDB store "
        "(.lmdb); give the store as train_file, valid_file or a test file. A stopped run of "
        "this command is continued by running it again. Overrides as for train.",
    )
    pre.add_argument("config", help="run config (YAML)")
    pre.add_argument("--out", required=True, help="the store to write (.lmdb)")
    pre.add_argument("--data", help="the data file (default: train_file)")

    ev = sub.add_parser(
        "eval",
        parents=[common, memory],
        allow_abbrev=False,
        help="error table (and predictions) of a model on a data file",
        description="Predict with a model and print its Markdown error table on the labels "
        "the data has (unlabelled data: predictions only, with --output).",
    )
    ev.add_argument("--model", required=True, help="model file written by tensorpot")
    ev.add_argument("--data", required=True, help="data, labelled or not (.xyz, .extxyz, .npz)")
    ev.add_argument("--output", help="write predictions to this extended-XYZ file")
    ev.add_argument("--parity", help="write a parity plot to this PNG file")
    ev.add_argument("--profile", metavar="PNG", help="energy profile of a scan: plot to this "
                    "PNG file, table beside it (.csv, .md); docs/profile.md")  # fmt: skip
    ev.add_argument("--profile-key", metavar="KEY",
                    help="info key of the scan coordinate (default: the frame order)")  # fmt: skip
    ev.add_argument("--energy-key", help="energy label key (default: energy)")
    ev.add_argument("--forces-key", help="forces label key (default: forces)")
    ev.add_argument("--stress-key", help="stress label key, eV/Å³ (default: stress)")
    ev.add_argument("--virials-key", help="virials label key, eV (default: virials)")
    ev.add_argument("--dipole-key", help="dipole label key (default: dipole)")
    ev.add_argument(
        "--polarizability-key", help="polarizability label key (default: polarizability)"
    )
    ev.add_argument(
        "--property-key",
        action="append",
        default=[],
        metavar="NAME=KEY",
        help="the label key of a property output (repeatable; default: its name)",
    )
    ev.add_argument(
        "--unit",
        action="append",
        default=[],
        metavar="LABEL=UNIT",
        help="the unit of a label in the table, e.g. dipole=D (repeatable)",
    )
    ev.add_argument("--energy-unit", help="unit of energy labels (default: the reader's)")
    ev.add_argument("--batch-size", type=_positive_int, default=10, help="structures per batch")
    ev.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    ev.add_argument("--overwrite", action="store_true", help="replace existing output files")

    _add_md_parser(sub.add_parser(
        "md",
        parents=[common, memory],
        allow_abbrev=False,
        help="molecular dynamics with a model (NVE, NVT, NPT): trajectory, log and report",
        description="Molecular dynamics through ASE from a structure or a trajectory's last "
        "frame; writes an extxyz trajectory, a CSV log and a JSON report (docs/md.md).",
    ))  # fmt: skip

    plot = sub.add_parser(
        "plot",
        parents=[common],
        allow_abbrev=False,
        help="learning curves from a training log",
        description="Plot the numeric columns of a training CSV log as PNG.",
    )
    plot.add_argument("--log", required=True, help="CSV log written by the trainer")
    plot.add_argument("--out", required=True, help="PNG file to write")
    plot.add_argument("--overwrite", action="store_true", help="replace an existing file")

    bench = sub.add_parser(
        "bench",
        parents=[common],
        allow_abbrev=False,
        help="time and memory of tensorpot against MACE and FlashCart of the same size",
        description="Energy + forces of a batch of structures: a tensorpot model (the default "
        "family at the size given, or --model) interleaved with MACE and FlashCart of that "
        "size, and the peak memory of each in a fresh process.",
    )
    bench.add_argument("--data", required=True, help="structures (extxyz, npz, any ASE format)")
    add_size_arguments(bench, _positive_int)
    for flag, default in [("--batch", 10), ("--repeats", 15), ("--threads", 2)]:
        bench.add_argument(flag, type=_positive_int, default=default)
    bench.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    bench.add_argument("--energy-only", action="store_true", help="energy without forces")
    bench.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="JSON",
        help="a tensorpot model config (a build_model mapping as JSON) instead of the default "
        "family's (repeatable)",
    )

    export = sub.add_parser(
        "export",
        parents=[common],
        allow_abbrev=False,
        help="write a model as one file that plain PyTorch runs, for MD engines",
        description="Export a model, its forces and virials included, as a torch.export "
        "program (.pt2) that loads without tensorpot; its inputs are positions, atomic "
        "numbers, the cell and a neighbour list (docs/export.md). Where the model runs the "
        "CPU kernel, the program calls its operators, and their library is written beside "
        "it (the .so of the same name), to load with torch.ops.load_library first.",
    )
    export.add_argument("--model", required=True, help="model file written by tensorpot")
    export.add_argument("--out", required=True, help="the file to write (.pt2)")
    export.add_argument(
        "--overwrite", action="store_true", help="replace an existing file (and library)"
    )
    export.add_argument(
        "--pytorch-ops",
        action="store_true",
        help="trace the PyTorch operations instead of the CPU kernel's operators: a program "
        "that needs no operator library (portable to other CPUs), slower where the model "
        "has a kernel",
    )
    return parser


def _add_md_parser(md: argparse.ArgumentParser) -> None:
    md.add_argument("--model", required=True, help="model file written by tensorpot")
    start = md.add_mutually_exclusive_group(required=True)
    start.add_argument("--structure", help="starting structure (extxyz, npz or any ASE format)")
    start.add_argument("--restart", help="continue from this trajectory's last frame")
    md.add_argument("--frame", type=int, default=0, help="frame of --structure (default 0)")
    md.add_argument("--ensemble", choices=["nve", "nvt", "npt"], default="nve")
    md.add_argument("--thermostat", choices=["langevin", "nose-hoover"], default="langevin")
    length = md.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=_positive_int, help="number of time steps")
    length.add_argument("--time", type=float, help="simulated time (ps)")
    for flag, default, text in [
        ("--timestep", 0.5, "time step (fs)"),
        ("--temperature", 300.0, "target and initial temperature (K)"),
        ("--friction", 0.01, "Langevin friction (1/fs)"),
        ("--tdamp", None, "Nose-Hoover/MTK thermostat time (fs; default 100 steps)"),
        ("--pressure", 1.0, "NPT pressure (bar)"),
        ("--pdamp", None, "NPT barostat time (fs; default 1000 steps)"),
    ]:
        md.add_argument(flag, type=float, default=default, help=text)
    md.add_argument("--seed", type=int, default=0, help="seed of velocities and Langevin noise")
    md.add_argument("--velocities", choices=["maxwell-boltzmann", "file", "zero"],
                    default="maxwell-boltzmann", help="initial velocities")  # fmt: skip
    md.add_argument("--traj-interval", type=_positive_int, default=10, help="steps per frame")
    md.add_argument("--log-interval", type=_positive_int, default=10, help="steps per log line")
    md.add_argument("--trajectory", help="extxyz trajectory (default: md.xyz, or the --restart "
                    "trajectory, which only --append writes to)")  # fmt: skip
    md.add_argument("--log", help="CSV log (default: <trajectory stem>.log.csv)")
    md.add_argument("--report", help="JSON report (default: <trajectory stem>.report.json)")
    md.add_argument("--append", action="store_true",
                    help="continue the --restart trajectory in place (it and its log)")  # fmt: skip
    md.add_argument("--reference", help="reference trajectory of the stability criteria")
    md.add_argument("--rdf", action="store_true", help="RDF and its criterion (periodic cells)")
    md.add_argument("--rdf-rmax", type=float, default=6.0, help="RDF range (Å)")
    md.add_argument("--rdf-bins", type=_positive_int, default=300)
    md.add_argument("--rdf-window", type=float, default=1.0, help="RDF window (ps)")
    md.add_argument("--rdf-threshold", type=float, default=1.0, help="largest window RDF MAE")
    md.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    md.add_argument("--dtype", choices=["float32", "float64"], help="default: the model's")
    md.add_argument("--engine", choices=["ase", "lammps"], default="ase",
                    help="integrate with ASE or in LAMMPS (NVE; docs/lammps.md)")  # fmt: skip


def _overrides(parser: argparse.ArgumentParser, extra: list[str]) -> list[str]:
    """``--a.b=1`` and ``a.b=1`` -> ``"a.b=1"``; anything else is a usage error."""
    out = []
    for arg in extra:
        text = arg.lstrip("-")
        if "=" not in text or text.startswith("="):
            parser.error(f"override {arg!r} must look like key=value or --key=value")
        out.append(text)
    return out


def _train(args: argparse.Namespace) -> int:
    from tensorpot.config import load_run_config

    config = load_run_config(args.config, args.overrides)
    from tensorpot.training import train

    result = train(config, resume=args.resume, handle_signals=True)
    if result.stopped is not None:
        print(f"tensorpot: interrupted ({result.stopped}) after epoch {result.epochs_run}; "
              "train --resume continues it", file=sys.stderr)  # fmt: skip
        return 130
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from tensorpot.config import load_run_config
    from tensorpot.training.preprocess import preprocess

    config = load_run_config(args.config, args.overrides)
    count = preprocess(config, args.out, data=args.data)
    print(f"tensorpot: wrote {count} structures to {args.out}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tensorpot.errors import ConfigError
    from tensorpot.evaluation.evaluate import evaluate_file
    from tensorpot.evaluation.metrics import format_error_table

    options = {
        "energy_key": args.energy_key,
        "forces_key": args.forces_key,
        "stress_key": args.stress_key,
        "virials_key": args.virials_key,
        "dipole_key": args.dipole_key,
        "polarizability_key": args.polarizability_key,
        "property_keys": _pairs("--property-key", args.property_key) or None,
        "energy_unit": args.energy_unit,
    }
    units = _pairs("--unit", args.unit)
    common = {"output": args.output, "parity": args.parity, "batch_size": args.batch_size,
              "device": args.device, "overwrite": args.overwrite, "units": units,
              **{k: v for k, v in options.items() if v is not None}}  # fmt: skip
    profile = None
    if args.profile is not None:
        from tensorpot.evaluation.profile import evaluate_profile_file

        table, predictions, profile = evaluate_profile_file(
            args.model, args.data, args.profile, args.profile_key, **common
        )
    elif args.profile_key is not None:
        raise ConfigError("--profile-key names the coordinate of --profile PNG: give both")
    else:
        table, predictions = evaluate_file(args.model, args.data, **common)
    if table:
        print(format_error_table({Path(args.data).name: table}, units))
    if profile is not None:
        print(f"\nenergy profile along {profile.coordinate}, relative to each curve's minimum:")
        print(profile.format())
    else:
        hint = "" if args.output else "; give --output to write them"
        count = len(predictions)
        print(f"tensorpot: {args.data} has no labels to score: {count} structures predicted"
              f"{hint}", file=sys.stderr)  # fmt: skip
    written = [("predictions", args.output), ("parity plot", args.parity)]
    if args.profile is not None:
        from tensorpot.evaluation.profile import profile_paths

        plot, csv, markdown = profile_paths(args.profile)
        written += [("profile plot", plot), ("profile table", csv), ("profile table", markdown)]
    for label, path in written:
        if path is not None:
            print(f"tensorpot: wrote {label} to {path}", file=sys.stderr)
    return 0


def _md(args: argparse.Namespace) -> int:
    from tensorpot.dynamics import MDFiles, MDSettings, RDFSettings, run_md, steps_for

    steps = args.steps if args.time is None else steps_for(args.time, args.timestep)
    names = ["ensemble", "timestep", "temperature", "thermostat", "friction", "tdamp",
             "pressure", "pdamp", "velocities", "seed"]  # fmt: skip
    settings = MDSettings(steps=steps, trajectory_interval=args.traj_interval,
                          log_interval=args.log_interval,
                          **{name: getattr(args, name) for name in names})  # fmt: skip
    rdf = None
    if args.rdf:
        rdf = RDFSettings(args.rdf_rmax, args.rdf_bins, args.rdf_window, args.rdf_threshold)
    trajectory = args.trajectory or args.restart or "md.xyz"
    files = MDFiles.beside(trajectory, args.log, args.report)
    report = run_md(args.model, settings, files, structure=args.structure, frame=args.frame,
                    restart=args.restart, append=args.append, reference=args.reference, rdf=rdf,
                    device=args.device, dtype=args.dtype, progress=sys.stderr.isatty(),
                    engine=args.engine)  # fmt: skip
    if report.rank != 0:  # LAMMPS under mpirun: rank 0 reports
        return 0
    print(report.format())
    for label, path in report.files.items():
        print(f"tensorpot: wrote {label} to {path}", file=sys.stderr)
    if report.stopped != "completed":
        print(f"tensorpot: interrupted ({report.stopped}) after {report.steps_run} steps; "
              f"--restart {files.trajectory} --append continues it", file=sys.stderr)  # fmt: skip
        return 130
    return 0


def _pairs(flag: str, items: list[str]) -> dict[str, str]:
    """``["a=b", ...]`` -> ``{"a": "b", ...}``; anything else is a ConfigError."""
    from tensorpot.errors import ConfigError

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"{flag} {item!r} must look like NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def _plot(args: argparse.Namespace) -> int:
    from tensorpot.evaluation.plots import plot_learning_curves

    plot_learning_curves(args.log, args.out, overwrite=args.overwrite)
    print(f"tensorpot: wrote learning curves to {args.out}", file=sys.stderr)
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from tensorpot.benchmarking.adapters import TensorPot, size_of
    from tensorpot.benchmarking.compare import compare_with_peers
    from tensorpot.benchmarking.harness import Workload, load_frames
    from tensorpot.errors import ConfigError
    from tensorpot.models.build import validate_model_config

    try:
        configs = [json.loads(text) for text in args.model]
    except json.JSONDecodeError as err:
        raise ConfigError(f"--model must be a JSON model config: {err}") from None
    for config in configs:  # a bad config is one line now, not a note under the table
        validate_model_config(config)
    models = [TensorPot(config) for config in configs]
    torch.set_num_threads(args.threads)
    task = "energy" if args.energy_only else "forces"
    frames = load_frames(args.data, args.batch)
    workload = Workload(Path(args.data).name, frames, args.dtype, task)
    print(compare_with_peers(workload, size_of(args), args.repeats, args.threads, models))
    return 0


def _export(args: argparse.Namespace) -> int:
    from tensorpot.models.export import read_record, save_exported

    kernel = False if args.pytorch_ops else None
    path = save_exported(args.model, args.out, overwrite=args.overwrite, kernel=kernel)
    print(f"tensorpot: wrote the exported model to {path}", file=sys.stderr)
    library = read_record(path)["operator_library"]
    if library is not None:
        print(f"tensorpot: it calls the CPU kernel's operators: load {path.parent / library} "
              "with torch.ops.load_library before torch.export.load", file=sys.stderr)  # fmt: skip
    return 0


COMMANDS = {
    "train": _train, "preprocess": _preprocess, "eval": _eval, "md": _md, "plot": _plot,
    "bench": _bench, "export": _export,
}  # fmt: skip


def _one_line(err: BaseException) -> str:
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(err))  # terminal colour codes
    text = " ".join(line.strip() for line in plain.splitlines() if line.strip())
    return text or type(err).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as ``tensorpot: warning: <message>`` (no source line)."""
    print(f"tensorpot: warning: {_one_line(message)}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tensorpot`` command line on ``argv`` (default ``sys.argv[1:]``).

    Returns:
        0 on success, 2 for a usage or input error, 130 when interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if args.command in ("train", "preprocess"):
            args.overrides = _overrides(parser, extra)
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "retain_memory", False):  # opt-in: it changes malloc for the process
        retain_freed_memory()
    try:
        with warnings.catch_warnings():
            if not args.debug:  # one line per warning, as errors are shown
                warnings.showwarning = _show_warning
            return COMMANDS[args.command](args)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"tensorpot: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("tensorpot: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
