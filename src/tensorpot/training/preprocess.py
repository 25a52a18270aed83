"""``tensorpot preprocess``: a data file turned into a store that training streams from.

The file is read with the run config's keys and units (as ``train`` reads it), each frame's
neighbour list is built with the model's ``r_max``, and the records go to an LMDB store
(:mod:`tensorpot.data.store`) a thousand at a time. Extended-XYZ files are read in chunks of
frames, so the memory of the conversion is that of a chunk, not of the file. A conversion
that was stopped leaves a store marked incomplete, which training refuses and the same command
completes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from tensorpot.config import RunConfig, parse_run_config
from tensorpot.data.configuration import Configuration
from tensorpot.data.store import is_store, read_meta, write_store
from tensorpot.errors import ConfigError
from tensorpot.models.build import validate_model_config
from tensorpot.training.run_data import read_data_file

__all__ = ["preprocess"]

logger = logging.getLogger(__name__)

#: Frames of an extended-XYZ file read at a time.
CHUNK_FRAMES = 20000
_KEYS = (
    "energy_key", "forces_key", "stress_key", "virials_key", "energy_unit", "dipole_key",
    "polarizability_key", "total_charge_key", "property_keys",
)  # fmt: skip


def _chunks(path: str, config: RunConfig, size: int) -> Iterator[list[Configuration]]:
    if Path(path).suffix.lower() not in (".xyz", ".extxyz"):
        yield read_data_file(path, config)
        return
    start = 0
    while True:
        chunk = read_data_file(path, config, index=slice(start, start + size))
        yield chunk
        if len(chunk) < size:
            return
        start += size


def preprocess(
    config: RunConfig | dict,
    out: str | os.PathLike,
    data: str | None = None,
    chunk_frames: int = CHUNK_FRAMES,
) -> int:
    """Write the store ``out`` (``.lmdb``) of ``data`` (default: the run's ``train_file``).

    Returns:
        The number of structures in the store.

    Raises:
        ConfigError: ``out`` does not end in ``.lmdb``, or ``data`` is a store.
        DataError: bad data (naming file and frame), or ``out`` holds a complete store or an
            incomplete one of other settings.
    """
    config = parse_run_config(config)
    source = data or config.train_file
    if not is_store(out):
        raise ConfigError(f"--out {out}: a store's name ends in .lmdb")
    if is_store(source):
        raise ConfigError(f"{source} is a store already")
    r_max = validate_model_config(config.model).r_max
    stat = Path(source).stat()
    keys = config.model_dump(mode="json", include=set(_KEYS))
    description = {
        "sources": [{"path": str(Path(source).resolve()), "size": stat.st_size,
                     "mtime_ns": stat.st_mtime_ns}],
        "keys": keys,
    }  # fmt: skip
    if Path(out).exists():
        done = int(read_meta(out).get("count", 0))
        logger.info("%s: continuing an incomplete store after %d structures", out, done)
    return write_store(out, _chunks(source, config, chunk_frames), r_max, description)
