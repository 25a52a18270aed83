"""Importing tensorpot and using its API leaves the process as it was: torch's default dtype,
threads and RNG, NumPy's and Python's RNGs, grad mode, signal handlers, the environment,
logging and warning filters. Checked in a fresh interpreter; the libraries tensorpot uses are
imported before the first look, since some change the process on import themselves (scipy
and sympy add warning filters, ``torch._dynamo``, which torch's optimisers import, sets
``TORCHINDUCTOR_CACHE_DIR``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]

SCRIPT = r"""
import hashlib, json, logging, os, random, signal, sys, tempfile, warnings
from pathlib import Path
import numpy as np
import torch
import ase.io, ase.md, pydantic, scipy.sparse, scipy.special, sympy, torch._dynamo
import tqdm, vesin, yaml

def digest(value):
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]

def state():
    return {
        "default dtype": str(torch.get_default_dtype()),
        "threads": torch.get_num_threads(),
        "interop threads": torch.get_num_interop_threads(),
        "torch RNG": digest(torch.random.get_rng_state().tolist()),
        "numpy RNG": digest(np.random.get_state()[1].tolist()),
        "python RNG": digest(random.getstate()),
        "grad enabled": torch.is_grad_enabled(),
        "anomaly detection": torch.is_anomaly_enabled(),
        "float32 matmul precision": torch.get_float32_matmul_precision(),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "SIGINT handler": repr(signal.getsignal(signal.SIGINT)),
        "SIGTERM handler": repr(signal.getsignal(signal.SIGTERM)),
        "environment": digest(sorted(os.environ.items())),
        "numpy errors": np.geterr(),
        "root logger": [logging.getLogger().level, repr(logging.getLogger().handlers)],
        "tensorpot logger": repr(logging.getLogger("tensorpot").handlers),
        "warning filters": digest(warnings.filters),
        "cwd": os.getcwd(),
    }

before = state()
import tensorpot
from tensorpot.calculators import TensorPotCalculator
from tensorpot.dynamics import MDFiles, MDSettings, run_md
from tensorpot.evaluation.evaluate import evaluate
from tensorpot.training import train
from tensorpot.data.readers import read_configurations
from tests.evaluation.tiny import frames_text, tiny_model, write_frames

out = Path(tempfile.mkdtemp())
data = write_frames(out / "two.xyz", frames_text(2))
model = tensorpot.load_model(tensorpot.save_model(tiny_model(), out / "tiny.model"))
atoms = __import__("ase.io").io.read(data, 0)
atoms.calc = TensorPotCalculator(model=model)
atoms.get_potential_energy(), atoms.get_forces()
evaluate(model, read_configurations(data))
run_md(model, MDSettings(steps=3, ensemble="nvt"), MDFiles.beside(out / "md.xyz"), structure=data)
from tensorpot.dynamics.lammps import lammps_unavailable
if lammps_unavailable() is None:  # LAMMPS (and MPI) started and ended in the process
    run_md(model, MDSettings(steps=3), MDFiles.beside(out / "lmp.xyz"), structure=data,
           engine="lammps")
train({
    "train_file": str(data), "valid_fraction": 0.5, "batch_size": 1, "max_num_epochs": 1,
    "E0s": "average", "progress_bar": False, "log_to_stdout": False, "threads": 1,
    "output_dir": str(out / "run"), "name": "tiny",
    "model": {"model": "ictp", "num_channels": 4, "max_L": 1, "correlation": 2, "r_max": 4.0,
              "num_interactions": 1, "radial_MLP": [8]},
})
after = state()
print(json.dumps({"before": before, "after": after}))
"""


def test_the_api_changes_no_process_wide_state():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    states = json.loads(done.stdout.strip().splitlines()[-1])
    changed = {
        key: (value, states["after"][key])
        for key, value in states["before"].items()
        if states["after"][key] != value
    }
    assert changed == {}
