"""GFN2-xTB labels for dipole and polarizability training: a molecule-disjoint data set.

Geometries come from the benchmark data in ``../shared/data`` beside the repository (only the
geometries; the reference labels are not used). Every frame is labelled with GFN2-xTB through
``tblite`` (``pip install tblite==0.8.0``, the ``xtb`` extra):

* ``energy`` (eV) and ``forces`` (eV/Å) of the field-free calculation,
* ``dipole`` (e·Å, 3 values) of the field-free calculation,
* ``polarizability`` (Å^3, 9 values, row-major 3x3): the polarizability volume
  alpha / (4 pi eps0), alpha_ij = d mu_i / d F_j by central finite differences of the
  dipole in a uniform electric field of +-h along x, y and z (7 SCF runs per frame),
  symmetrised; the raw asymmetry is kept for the summary,
* ``total_charge`` 0, ``molecule`` (a name), ``source`` (file and frame, relative to the
  data folder), arrays ``xtb_charges`` (GFN2-xTB Mulliken charges, e).

Splits (molecule-disjoint; a molecule is identified by its source file for the MD sets and
by its formula plus a bond-graph hash of every fragment for the SPICE subsets):

* ``train.xyz``: MD frames of the seen molecules (3BPA, ethanol, methanol and six rMD17
  molecules) plus single geometries of the SPICE DES370K monomers and dimers and the water
  clusters; split off a validation set from this file.
* ``test_seen.xyz``: other MD frames (the sources' test files) of the seen MD molecules.
* ``test_unseen.xyz``: acetylacetone and naphthalene MD frames and the SPICE PubChem,
  dipeptide and QMugs molecules (H C N O only); none of these has a frame in train.
* ``isolated_atoms.xyz``: H, C, N and O (``config_type=IsolatedAtom``).

Work is cached per chunk under ``<out>/cache`` (written atomically), so an interrupted run
resumes where it stopped; the final files are assembled from the chunks.

    python benchmarks/xtb_labels.py --estimate 20           # time 20 frames, no output
    nice -n 10 python benchmarks/xtb_labels.py runs/xtb_tensorial
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.data import chemical_symbols, covalent_radii
from ase.units import Bohr, Hartree

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # ../shared/data
ALLOWED = {1, 6, 7, 8}  # H C N O: one model covers every frame
RMD17 = "rmd17/npz/rmd17_{}_{}_01.npz"
SPICE = "spice_les_subsets/mace_off_test_subsets/{}.xyz"
# seen MD molecules: (name, train source, test_seen source, formula filter)
SEEN_MD = [
    ("3bpa", "3bpa/train_300K.xyz", "3bpa/test_300K.xyz", None),
    ("ethanol", "ethanol_botnet/train_eth_meth.xyz", "ethanol_botnet/test_eth_meth.xyz", "C2H6O"),
    ("methanol", "ethanol_botnet/train_eth_meth.xyz", "ethanol_botnet/test_eth_meth.xyz", "CH4O"),
] + [
    (m, RMD17.format(m, "train"), RMD17.format(m, "test"), None)
    for m in ("aspirin", "benzene", "malonaldehyde", "salicylic", "toluene", "uracil")
]
UNSEEN_MD = [
    ("acetylacetone", "acac/test_MD_300K.xyz", None),
    ("naphthalene", RMD17.format("naphthalene", "test"), None),
]
SPICE_SEEN = ["des370k_monomers", "des370k_dimers", "water"]
SPICE_UNSEEN = ["pubchem", "dipeptides", "qmugs"]
ATOM_UHF = {1: 1, 6: 0, 7: 1, 8: 0}  # lowest-energy occupation without spin polarisation
HUND_UHF = {1: 1, 6: 2, 7: 3, 8: 2}  # high-spin ground states, kept for reference
OUTPUT_FILES = ["train", "test_seen", "test_unseen", "isolated_atoms"]


# ----------------------------------------------------------------------------- tblite


def _tblite():
    """Import tblite lazily, after the thread count has been set in the environment."""
    import tblite
    import tblite.library as library
    from tblite.interface import Calculator

    return tblite, library, Calculator


def add_electric_field(calc, field) -> None:
    """Add a uniform electric field (atomic units, Hartree/(e·Bohr)) to a tblite calculator.

    ``Calculator.add("electric-field", numpy_array)`` fails in tblite 0.8.0: the C function
    ``tblite_new_electric_field(double *)`` gets the numpy array itself, which cffi rejects
    ("initializer for ctype 'double *' must be a cdata pointer, not numpy.ndarray"). The
    container is built here from a ``double[3]`` and pushed into the calculator, as
    ``Calculator.add`` would do.
    """
    _, library, _ = _tblite()
    buf = library.ffi.new("double[3]", [float(x) for x in field])
    container = library.lib.tblite_new_electric_field(buf)
    library.calculator_push_back(calc._ctx, calc._calc, container)


def singlepoint(numbers, pos_bohr, field=None, uhf=0, accuracy=0.01):
    """One GFN2-xTB SCF; returns (energy Eh, gradient Eh/Bohr, dipole e·Bohr, charges e)."""
    _, _, Calculator = _tblite()
    calc = Calculator("GFN2-xTB", numbers, pos_bohr, charge=0.0, uhf=uhf)
    calc.set("verbosity", 0)
    calc.set("accuracy", accuracy)
    if field is not None:
        add_electric_field(calc, field)
    res = calc.singlepoint()
    return res.get("energy"), res.get("gradient"), res.get("dipole"), res.get("charges")


def label(numbers, pos_ang, h, accuracy, uhf=0) -> dict:
    """Field-free energy, forces, dipole and charges plus the finite-difference alpha.

    Atomic units inside; the returned labels are in eV, Å and e. ``alpha_raw`` is the
    unsymmetrised d mu_i / d F_j (Bohr^3); ``dEdF`` is the central difference of the energy
    in the field, which must equal ``-mu`` (Eh/(Eh/(e·Bohr))).
    """
    numbers = np.asarray(numbers, dtype=int)
    pos = np.asarray(pos_ang, dtype=float) / Bohr
    t0 = time.perf_counter()
    energy, grad, mu, q = singlepoint(numbers, pos, None, uhf, accuracy)
    alpha = np.zeros((3, 3))
    dEdF = np.zeros(3)
    for j in range(3):
        field = np.zeros(3)
        field[j] = h
        e_p, _, mu_p, _ = singlepoint(numbers, pos, field, uhf, accuracy)
        e_m, _, mu_m, _ = singlepoint(numbers, pos, -field, uhf, accuracy)
        alpha[:, j] = (mu_p - mu_m) / (2 * h)
        dEdF[j] = (e_p - e_m) / (2 * h)
    return {
        "energy_au": float(energy),
        "gradient_au": np.asarray(grad),
        "dipole_au": np.asarray(mu),
        "charges": np.asarray(q),
        "alpha_raw_au": alpha,
        "dEdF_au": dEdF,
        "seconds": time.perf_counter() - t0,
    }


def to_atoms(numbers, pos_ang, lab: dict, info: dict) -> Atoms:
    """Frame with labels in eV, Å, e and diagnostics under ``diag_*`` (stripped on output)."""
    alpha = lab["alpha_raw_au"]
    sym = 0.5 * (alpha + alpha.T)
    scale = max(np.abs(alpha).max(), 1e-12)
    mu = lab["dipole_au"]
    atoms = Atoms(numbers=numbers, positions=pos_ang)
    atoms.info.update(info)
    atoms.info["energy"] = lab["energy_au"] * Hartree
    atoms.info["dipole"] = mu * Bohr
    atoms.info["polarizability"] = (sym * Bohr**3).reshape(9)
    atoms.info["total_charge"] = 0
    atoms.arrays["forces"] = -lab["gradient_au"] * Hartree / Bohr
    atoms.arrays["xtb_charges"] = lab["charges"]
    pc = (lab["charges"][:, None] * (np.asarray(pos_ang) / Bohr)).sum(0)
    atoms.info["diag_asym"] = float(np.abs(alpha - alpha.T).max() / scale)
    atoms.info["diag_min_eig"] = float(np.linalg.eigvalsh(sym).min() * Bohr**3)
    atoms.info["diag_field_err"] = float(np.abs(-lab["dEdF_au"] - mu).max() * Bohr)
    atoms.info["diag_mu_pc"] = pc * Bohr
    atoms.info["diag_seconds"] = lab["seconds"]
    return atoms


# ----------------------------------------------------------------------------- molecules


def components(numbers, pos) -> list[str]:
    """Sorted bond-graph hashes (Weisfeiler-Lehman, element labels) of the fragments."""
    import networkx as nx
    from scipy.sparse.csgraph import connected_components

    numbers = np.asarray(numbers)
    pos = np.asarray(pos)
    radii = covalent_radii[numbers]
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    bonded = (d < 1.2 * (radii[:, None] + radii[None])) & ~np.eye(len(numbers), dtype=bool)
    n, comp = connected_components(bonded, directed=False)
    hashes = []
    for c in range(n):
        idx = np.flatnonzero(comp == c)
        g = nx.Graph()
        for i in idx:
            g.add_node(int(i), el=chemical_symbols[numbers[i]])
        for a, b in zip(*np.nonzero(np.triu(bonded[np.ix_(idx, idx)]))):
            g.add_edge(int(idx[a]), int(idx[b]))
        formula = Atoms(numbers=numbers[idx]).get_chemical_formula()
        wl = nx.weisfeiler_lehman_graph_hash(g, node_attr="el", iterations=6)
        hashes.append(f"{formula}:{wl[:10]}")
    return sorted(hashes)


def molecule_name(hashes: list[str]) -> str:
    """A readable name: fragment formulas joined by '+', then a short hash of the graph."""
    tag = hashlib.sha1("|".join(hashes).encode()).hexdigest()[:8]
    return "+".join(h.split(":")[0] for h in hashes) + "_" + tag


def read_frames(rel: str, formula: str | None = None) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(frame index, numbers, positions Å) of a source file, optionally one formula only."""
    path = DATA / rel
    if path.suffix == ".npz":
        d = np.load(path)
        z = d["nuclear_charges"].astype(int)
        frames = [(i, z, c) for i, c in enumerate(d["coords"])]
    else:
        frames = [(i, a.numbers, a.positions) for i, a in enumerate(ase.io.read(path, ":"))]
    if formula is not None:
        frames = [f for f in frames if Atoms(numbers=f[1]).get_chemical_formula() == formula]
    return frames


def geometry_key(numbers, pos) -> bytes:
    return np.asarray(numbers).tobytes() + np.round(np.asarray(pos), 4).tobytes()


def spice_frames(name: str) -> list[dict]:
    """Neutral H C N O frames of a SPICE subset; water clusters without a charge count as 0."""
    out = []
    for i, a in enumerate(ase.io.read(DATA / SPICE.format(name), ":")):
        if not set(a.numbers) <= ALLOWED:
            continue
        charge = a.info.get("total_charge")
        n_h, n_o = (a.numbers == 1).sum(), (a.numbers == 8).sum()
        water = n_h + n_o == len(a) and n_h == 2 * n_o
        if charge is None and not water:
            continue  # charge unknown (QMugs): skipped
        if charge not in (None, 0) or a.numbers.sum() % 2:
            continue
        hashes = components(a.numbers, a.positions)
        out.append(
            {
                "numbers": a.numbers,
                "positions": a.positions,
                "molecule": molecule_name(hashes),
                "ids": hashes,
                "source": f"{SPICE.format(name)}:{i}",
                "group": f"spice_{name}",
                "smiles": a.info.get("smiles"),
            }
        )
    return out


def sample(frames, n, rng):
    """n frames drawn without replacement (all if fewer), in file order."""
    if n >= len(frames):
        return list(frames)
    idx = np.sort(rng.choice(len(frames), size=n, replace=False))
    return [frames[i] for i in idx]


def build_plan(args) -> tuple[dict[str, list[dict]], dict]:
    """The frames of each split, molecule-disjoint, and a record of what was dropped."""
    rng = np.random.default_rng(args.seed)
    splits: dict[str, list[dict]] = {"train": [], "test_seen": [], "test_unseen": []}
    notes: dict = {"dropped": []}

    def md(name, rel, formula, n):
        frames = sample(read_frames(rel, formula), n, rng)
        return [
            {"numbers": z, "positions": p, "molecule": name, "source": f"{rel}:{i}"}
            for i, z, p in frames
        ]

    seen_ids: dict[str, str] = {}
    for name, train_rel, test_rel, formula in SEEN_MD:
        z, p = read_frames(train_rel, formula)[0][1:]
        for h in components(z, p):
            seen_ids[h] = name
        train = md(name, train_rel, formula, args.n_train)
        keys = {geometry_key(f["numbers"], f["positions"]) for f in train}
        pool = [
            f
            for f in read_frames(test_rel, formula)
            if geometry_key(f[1], f[2]) not in keys  # a test frame is never a train frame
        ]
        notes.setdefault("test_pool_sizes", {})[name] = len(pool)
        test = [
            {"numbers": z, "positions": p, "molecule": name, "source": f"{test_rel}:{i}"}
            for i, z, p in sample(pool, args.n_test_seen, rng)
        ]
        splits["train"] += train
        splits["test_seen"] += test

    unseen_ids: dict[str, str] = {}
    for name, rel, formula in UNSEEN_MD:
        z, p = read_frames(rel, formula)[0][1:]
        hashes = components(z, p)
        clash = [h for h in hashes if h in seen_ids]
        if clash:
            raise SystemExit(f"unseen MD molecule {name} equals seen {seen_ids[clash[0]]}")
        for h in hashes:
            unseen_ids[h] = name
        splits["test_unseen"] += md(name, rel, formula, args.n_unseen_md)

    unseen_spice = []
    for sub in SPICE_UNSEEN:
        for f in spice_frames(sub):
            clash = [h for h in f["ids"] if h in seen_ids]
            if clash:  # equals a seen MD molecule
                notes["dropped"].append((f["source"], f"is seen molecule {seen_ids[clash[0]]}"))
                continue
            unseen_spice.append(f)
    for f in unseen_spice:
        for h in f["ids"]:
            unseen_ids[h] = f["molecule"]
    seen_spice = []
    for sub in SPICE_SEEN:
        for f in spice_frames(sub):
            clash = [h for h in f["ids"] if h in unseen_ids]
            if clash:  # contains an unseen molecule: left out of train
                notes["dropped"].append((f["source"], f"contains unseen {unseen_ids[clash[0]]}"))
                continue
            seen_spice.append(f)
    splits["train"] += seen_spice
    splits["test_unseen"] += unseen_spice

    # the molecule-disjointness check: no fragment of an unseen frame occurs in train
    train_ids = set(seen_ids) | {h for f in seen_spice for h in f["ids"]}
    leaks = sorted(set(unseen_ids) & train_ids)
    if leaks:
        raise SystemExit(f"molecule-disjointness violated: {leaks[:5]}")
    notes["n_train_fragment_ids"] = len(train_ids)
    notes["n_unseen_fragment_ids"] = len(unseen_ids)
    return splits, notes


def chunks(splits: dict[str, list[dict]], size: int) -> list[dict]:
    """Work units: up to ``size`` frames of one split and MD molecule or SPICE subset, named
    by their sources."""
    units = []
    for split, frames in splits.items():
        by_mol: dict[str, list[dict]] = defaultdict(list)
        for f in frames:
            by_mol[f.get("group", f["molecule"])].append(f)
        for mol in sorted(by_mol):
            group = by_mol[mol]
            for k in range(0, len(group), size):
                part = group[k : k + size]
                key = hashlib.sha1("\n".join(f["source"] for f in part).encode()).hexdigest()[:10]
                safe = "".join(c if c.isalnum() or c in "+-_" else "_" for c in mol)[:40]
                units.append({"name": f"{split}__{safe}__{k // size:03d}_{key}", "frames": part})
    return units


# ----------------------------------------------------------------------------- running


def run_chunk(job) -> tuple[str, int, float]:
    """Label one chunk and write it atomically to ``cache/<name>.xyz``."""
    unit, cache, h, accuracy = job
    t0 = time.perf_counter()
    atoms = []
    for f in unit["frames"]:
        info = {"molecule": f["molecule"], "source": f["source"]}
        if f.get("smiles"):
            info["smiles"] = f["smiles"]
        try:
            lab = label(f["numbers"], f["positions"], h, accuracy)
        except Exception as exc:  # an SCF that fails: the frame is left out and reported
            print(f"  FAILED {f['source']}: {type(exc).__name__}: {exc}", flush=True)
            continue
        atoms.append(to_atoms(f["numbers"], f["positions"], lab, info))
    path = Path(cache) / f"{unit['name']}.xyz"
    tmp = path.with_suffix(".tmp")
    ase.io.write(tmp, atoms, format="extxyz")
    os.replace(tmp, path)
    return unit["name"], len(atoms), time.perf_counter() - t0


def isolated_atoms(h: float, accuracy: float) -> list[Atoms]:
    out = []
    for z in sorted(ALLOWED):
        lab = label([z], np.zeros((1, 3)), h, accuracy, uhf=ATOM_UHF[z])
        hund = singlepoint(np.array([z]), np.zeros((1, 3)), None, HUND_UHF[z], accuracy)[0]
        info = {
            "molecule": chemical_symbols[z],
            "source": "isolated atom",
            "config_type": "IsolatedAtom",
            "uhf": ATOM_UHF[z],
            "energy_high_spin": hund * Hartree,
            "uhf_high_spin": HUND_UHF[z],
        }
        out.append(to_atoms([z], np.zeros((1, 3)), lab, info))
    return out


def sanity(h: float, accuracy: float) -> dict:
    """Checks on one frame: step size, sign of the response, SCF accuracy."""
    _, z, p = read_frames(RMD17.format("aspirin", "train"))[0]
    ref = label(z, p, h, accuracy)
    out = {"molecule": "aspirin, rmd17 train_01 frame 0", "h": h}
    a = 0.5 * (ref["alpha_raw_au"] + ref["alpha_raw_au"].T)
    out["alpha_eigenvalues_bohr3"] = np.linalg.eigvalsh(a).tolist()
    for h2 in (h / 5, 2 * h):
        b = label(z, p, h2, accuracy)["alpha_raw_au"]
        out[f"rel_change_alpha_h={h2:g}"] = float(np.abs(b - ref["alpha_raw_au"]).max() / a.max())
    # response to a finite field: the dipole along +z grows when the field is along +z
    e0, _, mu0, _ = singlepoint(z, p / Bohr, None, 0, accuracy)
    e1, _, mu1, _ = singlepoint(z, p / Bohr, [0.0, 0.0, 10 * h], 0, accuracy)
    out["mu_z_field_free_au"] = float(mu0[2])
    out[f"mu_z_in_field_{10 * h:g}_au"] = float(mu1[2])
    out["energy_change_in_field_au"] = float(e1 - e0)
    out["minus_mu_dot_F_au"] = float(-mu0[2] * 10 * h)
    b = label(z, p, h, 1.0)["alpha_raw_au"]
    out["rel_change_alpha_accuracy_1.0"] = float(np.abs(b - ref["alpha_raw_au"]).max() / a.max())
    return out


def summarize(out: Path, files: dict[str, list[Atoms]], extra: dict) -> dict:
    summary: dict = {"files": {}, **extra}
    for name, frames in files.items():
        mols = Counter(a.info["molecule"] for a in frames)
        asym = np.array([a.info["diag_asym"] for a in frames])
        min_eig = np.array([a.info["diag_min_eig"] for a in frames])
        mu = np.array([np.linalg.norm(a.info["dipole"]) for a in frames])
        iso = np.array([np.trace(a.info["polarizability"].reshape(3, 3)) / 3 for a in frames])
        ferr = np.array([a.info["diag_field_err"] for a in frames])
        pc = np.array([np.linalg.norm(a.info["diag_mu_pc"] - a.info["dipole"]) for a in frames])
        secs = np.array([a.info["diag_seconds"] for a in frames])
        summary["files"][name] = {
            "frames": len(frames),
            "atoms": int(sum(len(a) for a in frames)),
            "molecules": len(mols),
            "frames_per_molecule": dict(sorted(mols.items(), key=lambda kv: -kv[1])),
            "alpha_asymmetry_median": float(np.median(asym)),
            "alpha_asymmetry_max": float(asym.max()),
            "alpha_min_eigenvalue_A3": float(min_eig.min()),
            "frames_alpha_not_positive_definite": int((min_eig <= 0).sum()),
            "frames_alpha_min_eig_below_0.1_A3": int((min_eig < 0.1).sum()),
            "mean_abs_dipole_eA": float(mu.mean()),
            "mean_abs_dipole_debye": float(mu.mean() / 0.20819434),
            "mean_isotropic_alpha_A3": float(iso.mean()),
            "max_abs(-dE/dF - mu)_eA": float(ferr.max()),
            "mean_abs(mu_pointcharge - mu)_eA": float(pc.mean()),
            "label_seconds_total": float(secs.sum()),
            "label_seconds_per_frame": float(secs.mean()),
        }
    per_mol: dict = {}
    for name in ("train", "test_seen", "test_unseen"):
        by: dict = defaultdict(list)
        for a in files[name]:
            by[a.info["molecule"]].append(a)
        for mol, frames in by.items():
            if len(frames) < 20:
                continue
            mu = np.array([a.info["dipole"] for a in frames])
            pc = np.array([a.info["diag_mu_pc"] for a in frames])
            iso = [np.trace(a.info["polarizability"].reshape(3, 3)) / 3 for a in frames]
            per_mol[f"{name}/{mol}"] = {
                "frames": len(frames),
                "mean_abs_dipole_eA": float(np.linalg.norm(mu, axis=1).mean()),
                "mean_abs_pointcharge_dipole_eA": float(np.linalg.norm(pc, axis=1).mean()),
                "mean_abs_difference_eA": float(np.linalg.norm(mu - pc, axis=1).mean()),
                "mean_isotropic_alpha_A3": float(np.mean(iso)),
                "min_alpha_eigenvalue_A3": float(min(a.info["diag_min_eig"] for a in frames)),
            }
    summary["md_molecules"] = per_mol
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def read_labelled(path: Path) -> list[Atoms]:
    """Frames of a chunk file, with the labels ASE moves into a calculator put back in
    ``info``/``arrays``."""
    if path.stat().st_size == 0:
        return []
    frames = ase.io.read(path, ":")
    for a in frames:
        if a.calc is not None:
            for key, value in a.calc.results.items():
                if key == "forces":
                    a.arrays["forces"] = np.asarray(value)
                else:
                    a.info[key] = value
            a.calc = None
    return frames


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def strip(frames: list[Atoms]) -> list[Atoms]:
    out = []
    for a in frames:
        b = a.copy()
        for k in [k for k in b.info if k.startswith("diag_")]:
            del b.info[k]
        out.append(b)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out", nargs="?", default="runs/xtb_tensorial", help="output folder")
    p.add_argument("--n-train", type=int, default=160, help="train frames per seen MD molecule")
    p.add_argument("--n-test-seen", type=int, default=50, help="test frames per seen MD molecule")
    p.add_argument("--n-unseen-md", type=int, default=200, help="frames per unseen MD molecule")
    p.add_argument("--field", type=float, default=5e-4, help="field step h, a.u. (Eh/(e Bohr))")
    p.add_argument("--accuracy", type=float, default=0.01, help="tblite SCF accuracy (1 = default)")
    p.add_argument("--chunk-size", type=int, default=20)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="OpenMP threads per worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nice", type=int, default=10, help="added to the process priority")
    p.add_argument("--estimate", type=int, default=0, help="only time N random planned frames")
    args = p.parse_args(argv)

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    if args.nice:
        os.nice(args.nice)
    tblite, library, _ = _tblite()
    version = getattr(tblite, "__version__", None) or ".".join(map(str, library.get_version()))
    print(f"tblite {version}, GFN2-xTB, field step {args.field:g} a.u., accuracy {args.accuracy}")

    t_start = time.time()
    splits, notes = build_plan(args)
    units = chunks(splits, args.chunk_size)
    n_frames = sum(len(u["frames"]) for u in units)
    print(
        f"plan: {n_frames} frames in {len(units)} chunks: "
        + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        + f"; dropped {len(notes['dropped'])} SPICE frames ({time.time() - t_start:.1f} s)",
        flush=True,
    )

    if args.estimate:
        rng = np.random.default_rng(1)
        frames = [f for u in units for f in u["frames"]]
        pick = [frames[i] for i in rng.choice(len(frames), size=args.estimate, replace=False)]
        secs = [
            label(f["numbers"], f["positions"], args.field, args.accuracy)["seconds"] for f in pick
        ]
        natoms = np.mean([len(f["numbers"]) for f in pick])
        per_atom = sum(secs) / sum(len(f["numbers"]) for f in pick)
        all_atoms = sum(len(f["numbers"]) for f in frames)
        print(
            f"{args.estimate} frames ({natoms:.1f} atoms on average): {np.mean(secs):.3f} s/frame;"
            f" projected for all {len(frames)} frames: {per_atom * all_atoms / 60:.1f} min"
            f" (by atoms), {np.mean(secs) * len(frames) / 60:.1f} min (by frames)"
        )
        return 0

    out = Path(args.out)
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "chunks": {u["name"]: [f["source"] for f in u["frames"]] for u in units},
                "notes": notes,
            },
            indent=1,
        )
    )
    pending = [u for u in units if not (cache / f"{u['name']}.xyz").exists()]
    print(f"{len(units) - len(pending)} chunks cached, {len(pending)} to label", flush=True)
    jobs = [(u, str(cache), args.field, args.accuracy) for u in pending]
    t_label = time.time()
    todo = sum(len(u["frames"]) for u in pending)
    done = 0
    if args.workers > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(args.workers)
        results = pool.imap_unordered(run_chunk, jobs)
    else:
        pool = None
        results = map(run_chunk, jobs)
    for k, (name, n, secs) in enumerate(results, 1):
        done += n
        elapsed = time.time() - t_label
        eta = elapsed / max(done, 1) * (todo - done)
        print(
            f"[{k}/{len(pending)}] {name}: {n} frames, {secs:.1f} s"
            f" ({done}/{todo} frames, {elapsed / 60:.1f} min, eta {eta / 60:.1f} min)",
            flush=True,
        )
    if pool is not None:
        pool.close()
        pool.join()

    files: dict[str, list[Atoms]] = {name: [] for name in OUTPUT_FILES}
    for u in units:
        files[u["name"].split("__")[0]] += read_labelled(cache / f"{u['name']}.xyz")
    atoms_path = cache / "isolated_atoms.xyz"
    if not atoms_path.exists():
        ase.io.write(atoms_path, isolated_atoms(args.field, args.accuracy), format="extxyz")
    files["isolated_atoms"] = read_labelled(atoms_path)
    for name, frames in files.items():
        tmp = out / f"{name}.xyz.tmp"
        ase.io.write(tmp, strip(frames), format="extxyz")
        os.replace(tmp, out / f"{name}.xyz")

    checks = sanity(args.field, args.accuracy)
    extra = {
        "tblite": version,
        "method": "GFN2-xTB",
        "field_step_au": args.field,
        "accuracy": args.accuracy,
        "wall_seconds_this_run": time.time() - t_start,
        "cpu": cpu_name(),
        "python": sys.version.split()[0],
        "dropped": notes["dropped"],
        "test_pool_sizes": notes.get("test_pool_sizes"),
        "sanity": checks,
    }
    summary = summarize(out, files, extra)
    for name, s in summary["files"].items():
        print(
            f"{name}: {s['frames']} frames, {s['molecules']} molecules; "
            f"asymmetry median {s['alpha_asymmetry_median']:.1e}"
            f" max {s['alpha_asymmetry_max']:.1e};"
            f" min eig {s['alpha_min_eigenvalue_A3']:.3g} A^3"
            f" ({s['frames_alpha_not_positive_definite']} not pos. def.);"
            f" mean |mu| {s['mean_abs_dipole_eA']:.3f} eA ({s['mean_abs_dipole_debye']:.2f} D);"
            f" mean iso alpha {s['mean_isotropic_alpha_A3']:.2f} A^3;"
            f" labelling {s['label_seconds_total'] / 60:.1f} min"
        )
    print("sanity:", json.dumps(checks, indent=1))
    print(f"done in {(time.time() - t_start) / 60:.1f} min; files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
