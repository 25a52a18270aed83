"""MACE's tensorial models (mace-torch 0.3.16) on the GFN2-xTB dipole/polarizability data.

Trains, with MACE's own ``mace.cli.run_train`` in a child process (MACE as users run it):

* ``EnergyDipolesMACE``: energy + forces + dipole (``--loss energy_forces_dipole``,
  ``--error_table EnergyDipoleRMSE``; MACE asserts both for this model);
* ``AtomicDielectricMACE``: dipole + polarizability (``--loss dipole_polar``; MACE sets
  ``--error_table DipolePolarRMSE`` itself), no energy or forces.

and evaluates the saved models here, in Python, with the metric names and definitions of
``tensorpot.evaluation.metrics.ErrorAccumulator.table``: MAE and RMSE of energies per structure
and per atom (meV, meV/atom), of force components (meV/Å), of dipole components, of the dipole's
norm and of dipole components per atom (e·Å), of the 9 polarizability components and of them
per atom (Å^3). Only the structures that carry a label count for it.

The data (``docs/benchmarks/tensorial_data.md``) name their labels ``energy``, ``forces``,
``dipole``, ``polarizability``. ASE's extxyz reader moves ``energy``, ``forces`` and ``dipole``
into ``atoms.calc.results``; MACE 0.3.16 copies energy and forces back from there (with a
warning) but reads dipoles only from ``atoms.info``, so ``--dipole_key dipole`` on these files
trains on zero dipoles without a word. :func:`prepare_xyz` therefore writes copies with MACE's
``REF_`` keys (``REF_energy``, ``REF_forces``, ``REF_dipole``, ``REF_polarizability``, plus
``total_charge``), which :func:`train_mace` passes explicitly.

Other points of MACE 0.3.16 that matter here:

* Neither model is a ScaleShiftMACE: no scale or shift of the interaction energy.
  ``EnergyDipolesMACE``'s energy is E0s + the readouts; its dipole is the sum of per-atom
  vectors plus sum_i q_i r_i / 0.2082 with q from ``--charges_key`` (default ``REF_charges``,
  absent here, so zero). The 0.2082 turns e·Å into Debye: do not pass charges with e·Å dipoles.
* ``AtomicDielectricMACE`` predicts charges (shifted so that they sum to ``total_charge``,
  0 when the key is missing) and atomic dipoles; its dipole is sum_i (q_i r_i + mu_i), with no
  unit factor, so e·Å labels are fine. No electric field is involved. Its polarizability is
  the sum of per-atom 0e + 2e parts: with ``max_L`` < 2 the hidden features have no 2e part and
  the polarizability can only be isotropic.
* MACE requires ``--E0s`` even for ``AtomicDielectricMACE`` (which ignores them): a dict
  (here from ``isolated_atoms.xyz``) or ``average`` (least squares on the training energies).
  With the GFN2-xTB isolated atoms, E - sum E0 is -6.0 eV/atom on train.xyz (the atomisation
  energy), which ``EnergyDipolesMACE``, having no shift, must learn from scratch (its initial
  energy RMSE is ~6000 meV/atom); ``average`` leaves 68 meV/atom.
* Non-periodic frames are moved to their mean position (:func:`centred`): without it MACE
  spends 100 s on the neighbour lists of train.xyz, with it under 1 s.
* The loss divides dipoles and polarizabilities by the number of atoms; the dipole term of
  ``energy_forces_dipole`` has a factor 100 on top of ``--dipole_weight``. The default
  ``--forces_weight`` is 100.
* MACE keeps the checkpoint of the best validation loss and, at the end, saves
  ``<name>.model`` from the latest checkpoint in ``checkpoints/``: a folder with checkpoints of
  an earlier run would be picked up, so :func:`train_mace` wants a fresh ``out_dir``.
* ``torch.load`` of a ``.model`` file needs ``weights_only=False`` under torch >= 2.6.
* e3nn 0.4.4 loads its constants with ``torch.load``, which under torch 2.13 fails unless
  ``slice`` is a safe global or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set; ``import mace``
  sets that variable for the whole process, so import ``mace`` before ``e3nn``
  (``tensorpot.benchmarking.adapters.import_mace`` does, and puts the variable back
  afterwards).

Cost (2-core shared CPU, float64, batch 5, 2 threads, 32 channels, max_L 2, correlation 3):
``AtomicDielectricMACE`` trains 135 frames in 9 s per epoch on a quiet machine, a full epoch
of train.xyz (1513 frames, 10 % validation) took 352 s under a load of ~3;
``EnergyDipolesMACE`` (forces: a double backward) needs ~1 s per training frame, 159 s for
135 frames, so a full epoch of train.xyz is ~25 min.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import ase
import ase.io
import numpy as np

from tensorpot.benchmarking.adapters import NO_WEIGHTS_ONLY, import_mace  # noqa: F401

KINDS = {
    "EnergyDipolesMACE": {
        "loss": "energy_forces_dipole",
        "error_table": "EnergyDipoleRMSE",
        "weights": {"energy_weight": 1.0, "forces_weight": 100.0, "dipole_weight": 1.0},
    },
    "AtomicDielectricMACE": {
        "loss": "dipole_polar",
        "error_table": "DipolePolarRMSE",
        "weights": {"dipole_weight": 1.0, "polarizability_weight": 1.0},
    },
}
#: the model size: ``num_channels`` x (0e, 1o, 2e, ... up to ``max_L``), MACE's flag names
DEFAULT_SIZE = {
    "num_channels": 32,
    "max_L": 2,
    "correlation": 3,
    "r_max": 5.0,
    "max_ell": 3,
    "num_interactions": 2,
}
LOG_LINE = re.compile(r"(Initial|Epoch (\d+)): head: \S+, loss=")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """This process's environment with ``threads`` threads for every math library."""
    return {**os.environ, **dict.fromkeys(THREAD_VARS, str(threads))}


def hidden_irreps(num_channels: int, max_L: int) -> str:
    """``"32x0e+32x1o+32x2e"`` for 32 channels and max_L 2."""
    return "+".join(f"{num_channels}x{L}{'eo'[L % 2]}" for L in range(max_L + 1))


# --------------------------------------------------------------------------------------------
# data


def labels_of(atoms: ase.Atoms) -> dict[str, np.ndarray | float | None]:
    """The labels of a frame, wherever ASE put them (calc results, info, arrays), under the
    data set's names or MACE's ``REF_`` names."""
    results = dict(atoms.calc.results) if atoms.calc is not None else {}

    def get(key: str):
        if key in results:
            return results[key]
        for name in (key, f"REF_{key}"):  # the data's keys, then those of prepare_xyz
            if name in atoms.info:
                return atoms.info[name]
            if name in atoms.arrays:
                return atoms.arrays[name]
        return None

    out: dict[str, np.ndarray | float | None] = {}
    energy = get("energy")
    out["energy"] = None if energy is None else float(energy)
    for key, shape in (("forces", (-1, 3)), ("dipole", (3,)), ("polarizability", (3, 3))):
        value = get(key)
        out[key] = None if value is None else np.asarray(value, dtype=float).reshape(shape)
    charge = get("total_charge")
    out["total_charge"] = 0.0 if charge is None else float(charge)
    return out


def centred(positions: np.ndarray, total_charge: float) -> np.ndarray:
    """``positions`` moved to their mean if the structure is neutral, else unchanged.

    No label of a neutral molecule depends on the origin (the dipole of a charged one does).
    MACE (``mace.data.neighborhood.get_neighborhood``) puts a non-periodic structure in a box
    of side 5 r_max (max|x| + 1) and matscipy bins that box, so the neighbour list of a frame
    costs about (max|x|)^3: some frames of the data set lie 200 Å from the origin and take
    up to seconds each (100 s of MACE's setup for train.xyz), milliseconds once centred.
    """
    if total_charge != 0:
        return positions
    return positions - positions.mean(axis=0)


def prepare_xyz(
    src: str | Path,
    dst: str | Path,
    limit: int | None = None,
    seed: int = 0,
    center: bool = True,
) -> Path:
    """Copy ``src`` to ``dst`` with MACE's keys (``REF_energy``, ``REF_forces``, ``REF_dipole``,
    ``REF_polarizability`` as 9 values, ``total_charge``, ``config_type``); no calculator.

    ``limit``: keep that many frames, drawn at random (``seed``) and kept in file order.
    ``center``: move neutral structures to their mean position (:func:`centred`).
    """
    frames = ase.io.read(src, index=":")
    if limit is not None and limit < len(frames):
        keep = np.sort(np.random.default_rng(seed).choice(len(frames), limit, replace=False))
        frames = [frames[k] for k in keep]
    out = []
    for atoms in frames:
        labels = labels_of(atoms)
        positions = atoms.positions
        if center and not atoms.pbc.any():
            positions = centred(positions, labels["total_charge"])
        copy = ase.Atoms(numbers=atoms.numbers, positions=positions, cell=atoms.cell, pbc=atoms.pbc)
        if labels["energy"] is not None:
            copy.info["REF_energy"] = labels["energy"]
        if labels["dipole"] is not None:
            copy.info["REF_dipole"] = labels["dipole"]
        if labels["polarizability"] is not None:
            copy.info["REF_polarizability"] = labels["polarizability"].reshape(9)
        copy.info["total_charge"] = labels["total_charge"]
        if "config_type" in atoms.info:
            copy.info["config_type"] = atoms.info["config_type"]
        if labels["forces"] is not None:
            copy.arrays["REF_forces"] = labels["forces"]
        out.append(copy)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(dst, out, format="extxyz")
    return dst


def isolated_atom_energies(path: str | Path) -> dict[int, float]:
    """``{Z: E}`` (eV) of the one-atom frames of ``path`` (``isolated_atoms.xyz``)."""
    found = {}
    for atoms in ase.io.read(path, index=":"):
        if len(atoms) == 1:
            found[int(atoms.numbers[0])] = float(labels_of(atoms)["energy"])
    if not found:
        raise ValueError(f"{path}: no isolated atoms")
    return found


def _e0s_text(e0s: str | Path | Mapping[int, float]) -> str:
    """MACE's ``--E0s``: ``"average"``, a dict or the isolated atoms of an extxyz file."""
    if isinstance(e0s, Mapping):
        return "{" + ", ".join(f"{int(z)}: {float(e)!r}" for z, e in sorted(e0s.items())) + "}"
    if str(e0s) == "average":
        return "average"
    return _e0s_text(isolated_atom_energies(e0s))


# --------------------------------------------------------------------------------------------
# training


def mace_args(
    kind: str,
    train_file: Path,
    out_dir: Path,
    *,
    epochs: int,
    size: Mapping[str, float] | None = None,
    seed: int = 0,
    valid_fraction: float | None = 0.1,
    valid_file: Path | None = None,
    e0s: str | Path | Mapping[int, float] = "average",
    batch_size: int = 5,
    valid_batch_size: int = 10,
    lr: float = 0.01,
    weights: Mapping[str, float] | None = None,
    ema: bool = True,
    name: str = "mace",
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``mace.cli.run_train`` arguments (after the program name) of one run."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    spec = KINDS[kind]
    s = {**DEFAULT_SIZE, **(size or {})}
    w = {**spec["weights"], **(weights or {})}
    out_dir = Path(out_dir)
    args = [
        f"--name={name}",
        f"--seed={seed}",
        f"--work_dir={out_dir}",
        f"--log_dir={out_dir / 'logs'}",
        f"--checkpoints_dir={out_dir / 'checkpoints'}",
        f"--model_dir={out_dir}",
        f"--results_dir={out_dir / 'results'}",
        f"--model={kind}",
        f"--loss={spec['loss']}",
        f"--error_table={spec['error_table']}",
        f"--train_file={train_file}",
        "--energy_key=REF_energy",
        "--forces_key=REF_forces",
        "--dipole_key=REF_dipole",
        "--polarizability_key=REF_polarizability",
        "--total_charge_key=total_charge",
        f"--E0s={_e0s_text(e0s)}",
        f"--hidden_irreps={hidden_irreps(int(s['num_channels']), int(s['max_L']))}",
        f"--max_ell={int(s['max_ell'])}",
        f"--correlation={int(s['correlation'])}",
        f"--r_max={float(s['r_max'])}",
        f"--num_interactions={int(s['num_interactions'])}",
        "--default_dtype=float64",
        "--device=cpu",
        f"--batch_size={batch_size}",
        f"--valid_batch_size={valid_batch_size}",
        f"--lr={lr}",
        *(f"--{key}={value}" for key, value in w.items()),
        f"--max_num_epochs={epochs}",
        "--eval_interval=1",
        "--save_cpu",
        "--plot=False",
        "--pin_memory=False",
        "--num_workers=0",
    ]
    if valid_file is not None:
        args.append(f"--valid_file={valid_file}")
    elif valid_fraction is not None:
        args.append(f"--valid_fraction={valid_fraction}")
    if ema:
        args += ["--ema", "--ema_decay=0.99"]
    return [*args, *extra]


def parse_log(text: str) -> list[tuple[int | None, float]]:
    """``(epoch, unix time)`` of every validation line (``None`` for the initial one)."""
    found = []
    for line in text.splitlines():
        match = LOG_LINE.search(line)
        if match is None:
            continue
        try:
            stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
            stamp += float(line[20:23]) / 1e3
        except ValueError:
            continue
        epoch = None if match.group(2) is None else int(match.group(2))
        found.append((epoch, stamp))
    return found


def error_table(text: str, title: str = "Error-table on TRAIN and VALID") -> str:
    """The table MACE logs after ``title``."""
    lines = text.splitlines()
    for k, line in enumerate(lines):
        if title in line:
            rows = []
            for row in lines[k + 1 :]:
                if not row.startswith(("+", "|")):
                    break
                rows.append(row)
            return "\n".join(rows)
    return ""


def train_mace(
    kind: str,
    train_file: str | Path,
    valid_fraction: float | None,
    epochs: int,
    out_dir: str | Path,
    size: Mapping[str, float] | None = None,
    seed: int = 0,
    threads: int = 2,
    *,
    valid_file: str | Path | None = None,
    e0s: str | Path | Mapping[int, float] = "average",
    n_train: int | None = None,
    batch_size: int = 5,
    lr: float = 0.01,
    weights: Mapping[str, float] | None = None,
    ema: bool = True,
    extra_args: Sequence[str] = (),
    timeout: float | None = None,
    nice: int = 0,
) -> dict:
    """Train ``kind`` with ``python -m mace.cli.run_train`` in ``out_dir`` (must hold no
    checkpoints yet).

    ``train_file`` (and ``valid_file``) are the data set's own files: they are copied with
    MACE's keys into ``out_dir`` first (``n_train`` random frames of ``train_file`` if given).
    Without ``valid_file`` MACE draws ``valid_fraction`` of them (seed ``seed``) and writes the
    indices to ``out_dir/mace_valid_indices_<seed>.txt`` (10 or more frames). ``e0s``:
    ``"average"``, ``{Z: eV}`` or an extxyz file of isolated atoms. The child gets ``threads``
    threads. Returns ``model_path``, ``train_seconds`` (wall time of MACE's whole run: loading,
    statistics, training, saving, its final error table on train and valid),
    ``setup_seconds`` (from the start to the end of the initial validation), ``fit_seconds``
    (from the initial validation to the last epoch's validation), ``epoch_seconds`` (each
    epoch with its validation), ``best_epoch`` (MACE's model is that epoch's checkpoint),
    ``args``, ``log``, ``valid_indices`` (the file, or None) and MACE's ``error_table`` text.
    """
    out_dir = Path(out_dir).resolve()
    checkpoints = out_dir / "checkpoints"
    if checkpoints.exists() and any(checkpoints.iterdir()):
        raise FileExistsError(f"{checkpoints} holds checkpoints of an earlier run")
    out_dir.mkdir(parents=True, exist_ok=True)
    train_copy = prepare_xyz(train_file, out_dir / "train_mace.xyz", limit=n_train, seed=seed)
    valid_copy = None
    if valid_file is not None:
        valid_copy = prepare_xyz(valid_file, out_dir / "valid_mace.xyz")
    args = mace_args(
        kind,
        train_copy,
        out_dir,
        epochs=epochs,
        size=size,
        seed=seed,
        valid_fraction=valid_fraction,
        valid_file=valid_copy,
        e0s=e0s,
        batch_size=batch_size,
        lr=lr,
        weights=weights,
        ema=ema,
        extra=extra_args,
    )
    env = thread_env(threads)
    command = [sys.executable, "-m", "mace.cli.run_train", *args]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    log = out_dir / "mace_train.out"
    start = time.time()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.run(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=out_dir,
            timeout=timeout,
            check=False,
        )
    train_seconds = time.time() - start
    text = log.read_text(encoding="utf-8", errors="replace")
    model_path = out_dir / "mace.model"
    if proc.returncode != 0 or not model_path.exists():
        tail = "\n".join(text.splitlines()[-30:])
        raise RuntimeError(f"mace run_train failed (rc {proc.returncode}), {log}:\n{tail}")
    stamps = parse_log(text)
    setup_seconds = stamps[0][1] - start if stamps else float("nan")
    epoch_seconds = [b[1] - a[1] for a, b in zip(stamps, stamps[1:])]
    best = re.findall(r"Loaded Stage one model from epoch (\d+)", text)
    indices = out_dir / f"mace_valid_indices_{seed}.txt"  # 0-based, lines of train_mace.xyz
    return {
        "kind": kind,
        "model_path": str(model_path),
        "train_seconds": train_seconds,
        "setup_seconds": setup_seconds,
        "fit_seconds": stamps[-1][1] - stamps[0][1] if len(stamps) > 1 else float("nan"),
        "epoch_seconds": epoch_seconds,
        "epochs": len(epoch_seconds),
        "best_epoch": int(best[-1]) if best else None,
        "threads": threads,
        "args": args,
        "log": str(log),
        "valid_indices": str(indices) if indices.exists() else None,
        "error_table": error_table(text),
    }


# --------------------------------------------------------------------------------------------
# evaluation


def load_model(model_path: str | Path):
    """The ``torch.nn.Module`` MACE saved, in eval mode, its parameters frozen."""
    import torch

    import_mace()
    model = torch.load(model_path, map_location="cpu", weights_only=False).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def predict_mace(model, frames: Sequence[ase.Atoms], batch_size: int = 10) -> dict:
    """Predictions of a MACE model on ``frames``: ``energy [N]`` (eV), ``forces`` (list of
    ``[n_i, 3]``, eV/Å), ``dipole [N, 3]`` (label units), ``polarizability [N, 3, 3]``, each
    only where the model gives it."""
    import torch

    import_mace()
    from mace import data as mace_data
    from mace.tools import torch_geometric
    from mace.tools.utils import AtomicNumberTable

    kind = type(model).__name__
    dtype = next(model.parameters()).dtype
    z_table = AtomicNumberTable([int(z) for z in model.atomic_numbers])
    r_max = float(model.r_max)
    heads = list(getattr(model, "heads", None) or ["Default"])
    energy_model = hasattr(model, "atomic_energies_fn")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        configs = [
            mace_data.Configuration(
                atomic_numbers=atoms.numbers.copy(),
                positions=(
                    atoms.positions.copy()
                    if atoms.pbc.any()
                    else centred(atoms.positions, labels_of(atoms)["total_charge"])
                ),
                properties={"total_charge": labels_of(atoms)["total_charge"]},
                property_weights={},
                cell=np.asarray(atoms.cell.array),
                pbc=tuple(bool(p) for p in atoms.pbc),
                head=heads[0],
            )
            for atoms in frames
        ]
        dataset = [
            mace_data.AtomicData.from_config(c, z_table=z_table, cutoff=r_max, heads=heads)
            for c in configs
        ]
        loader = torch_geometric.dataloader.DataLoader(
            dataset, batch_size=batch_size, shuffle=False, drop_last=False
        )
        out: dict[str, list] = {"energy": [], "forces": [], "dipole": [], "polarizability": []}
        for batch in loader:
            inputs = batch.to_dict()
            if energy_model:
                pred = model(inputs, training=False, compute_force=True)
            else:
                pred = model(inputs, training=False, compute_force=False)
            counts = (batch.ptr[1:] - batch.ptr[:-1]).tolist()
            if pred.get("energy") is not None:
                out["energy"].append(pred["energy"].detach().double().numpy())
            if pred.get("forces") is not None:
                forces = pred["forces"].detach().double().numpy()
                out["forces"] += np.split(forces, np.cumsum(counts)[:-1])
            if pred.get("dipole") is not None:
                out["dipole"].append(pred["dipole"].detach().double().numpy().reshape(-1, 3))
            if pred.get("polarizability") is not None:
                polar = pred["polarizability"].detach().double().numpy()
                out["polarizability"].append(polar.reshape(-1, 3, 3))
    finally:
        torch.set_default_dtype(previous)
    result: dict = {"kind": kind}
    for key in ("energy", "dipole", "polarizability"):
        if out[key]:
            result[key] = np.concatenate(out[key])
    if out["forces"]:
        result["forces"] = out["forces"]
    return result


def error_metrics(frames: Sequence[ase.Atoms], pred: Mapping) -> dict[str, float]:
    """MAE and RMSE as ``tensorpot.evaluation.metrics.ErrorAccumulator.table`` names them:
    energy-like in meV units, dipoles (e·Å) and polarizabilities (Å^3) in label units."""
    labels = [labels_of(atoms) for atoms in frames]
    n_atoms = np.array([len(atoms) for atoms in frames], dtype=float)
    errors: dict[str, np.ndarray] = {}

    def have(key: str) -> np.ndarray:
        return np.array([lab[key] is not None for lab in labels], dtype=bool)

    if "energy" in pred:
        keep = have("energy")
        ref = np.array([lab["energy"] for lab, k in zip(labels, keep) if k])
        diff = pred["energy"][keep] - ref
        errors["energy"] = 1e3 * diff
        errors["energy_per_atom"] = 1e3 * diff / n_atoms[keep]
    if "forces" in pred:
        keep = have("forces")
        diffs = [p - lab["forces"] for p, lab, k in zip(pred["forces"], labels, keep) if k]
        if diffs:
            errors["forces"] = 1e3 * np.concatenate(diffs).ravel()
    if "dipole" in pred:
        keep = have("dipole")
        ref = np.array([lab["dipole"] for lab, k in zip(labels, keep) if k]).reshape(-1, 3)
        mine = pred["dipole"][keep]
        errors["dipole"] = mine - ref
        errors["dipole_norm"] = np.linalg.norm(mine, axis=1) - np.linalg.norm(ref, axis=1)
        errors["dipole_per_atom"] = (mine - ref) / n_atoms[keep, None]
    if "polarizability" in pred:
        keep = have("polarizability")
        ref = np.array([lab["polarizability"] for lab, k in zip(labels, keep) if k])
        diff = pred["polarizability"][keep] - ref.reshape(-1, 3, 3)
        errors["polarizability"] = diff
        errors["polarizability_per_atom"] = diff / n_atoms[keep, None, None]
    table = {}
    for name, error in errors.items():
        error = np.asarray(error, dtype=float).ravel()
        if error.size == 0:
            continue
        base, suffix = (
            (name.removesuffix("_per_atom"), "_per_atom")
            if name.endswith("_per_atom")
            else (name, "")
        )
        table[f"{base}_mae{suffix}"] = float(np.abs(error).mean())
        table[f"{base}_rmse{suffix}"] = math.sqrt(float(np.square(error).mean()))
    return table


def evaluate_mace(
    model_path: str | Path,
    files: Mapping[str, str | Path],
    batch_size: int = 10,
    threads: int | None = None,
) -> dict[str, dict[str, float]]:
    """``{name: {metric: value}}`` of the model on every extxyz file of ``files`` (the data
    set's own files), plus ``n_structures`` and ``predict_seconds`` per file."""
    import torch

    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        model = load_model(model_path)
        results = {}
        for name, path in files.items():
            frames = ase.io.read(path, index=":")
            start = time.perf_counter()
            pred = predict_mace(model, frames, batch_size=batch_size)
            seconds = time.perf_counter() - start
            table = error_metrics(frames, pred)
            table["n_structures"] = float(len(frames))
            table["predict_seconds"] = seconds
            results[name] = table
    finally:
        torch.set_num_threads(previous_threads)
    return results


# --------------------------------------------------------------------------------------------
# command line


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = Path("runs/xtb_tensorial")
    parser.add_argument("--kind", choices=sorted(KINDS), required=True)
    parser.add_argument("--data", type=Path, default=data, help="folder of the data set")
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the run")
    parser.add_argument("--n-train", type=int, default=None, help="frames of train.xyz")
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--max-L", type=int, default=2)
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--r-max", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--e0s", default=None, help="'average' or an extxyz of isolated atoms")
    parser.add_argument("--timeout", type=float, default=None, help="seconds for MACE")
    parser.add_argument("--no-eval", action="store_true", help="train only")
    args = parser.parse_args(argv)
    size = {
        "num_channels": args.channels,
        "max_L": args.max_L,
        "correlation": args.correlation,
        "r_max": args.r_max,
    }
    run = train_mace(
        args.kind,
        args.data / "train.xyz",
        args.valid_fraction,
        args.epochs,
        args.out,
        size,
        seed=args.seed,
        threads=args.threads,
        e0s=args.e0s or args.data / "isolated_atoms.xyz",
        n_train=args.n_train,
        batch_size=args.batch_size,
        lr=args.lr,
        nice=args.nice,
        timeout=args.timeout,
    )
    report = {"train": {k: v for k, v in run.items() if k != "error_table"}}
    print(run["error_table"])
    if not args.no_eval:
        files = {name: args.data / f"{name}.xyz" for name in ("test_seen", "test_unseen")}
        report["test"] = evaluate_mace(run["model_path"], files, threads=args.threads)
    (Path(args.out) / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
