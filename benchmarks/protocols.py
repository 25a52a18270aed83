"""The papers' accuracy protocols, trained toward convergence across working sessions.

Each protocol trains two jobs side by side, each pinned to one core (``taskset``) with one
thread, so that both get the same machine for the same wall-clock time:

* ``rmd17-50``: ICTP on rMD17 aspirin and on ethanol, 50 training frames of split 01
  (``configs/ictp-rmd17-50.yaml``), at most its 2,000 epochs;
* ``3bpa``: ICTP (``configs/ictp-3bpa-450.yaml``: C 32, L 2, nu 3, ICTP_sym, float64) and MACE
  (``mace_run_train`` through ``mace_runner.py``, the same size and optimisation settings) on
  the same 450 + 50 frames of ``train_300K`` (one seeded split written once as extended XYZ);
* ``rmd17-950``: ICTP on aspirin and on ethanol, 950 + 50 frames of split 01
  (``configs/ictp-rmd17-950.yaml``).

A protocol gets ``--budget-hours`` (default 8) of wall-clock time in all, counted across
sessions in ``<root>/<protocol>/progress.json`` (updated every minute, so a session that is
cut off loses at most a minute of its count). ``run --hours H`` spends H hours on the first
unfinished protocols in the order above. tensorpot's jobs continue with ``--resume`` from their
newest checkpoint and stop through ``time_budget_minutes`` at the end of the first epoch after
the deadline; MACE continues with ``--restart_latest`` from the one checkpoint it keeps (its best
validation epoch, so epochs after it are trained again) and is stopped by SIGTERM by the same
rule. The runs live under ``--root`` (default ``../runs/protocols``, outside the repository).

``save`` copies what each job needs to continue to ``pretrained/<job>/`` (tensorpot: the
best model, ``log.csv`` and the newest checkpoint; MACE: its kept checkpoint and its log) and
the hours of every protocol to ``pretrained/protocols.json``, so that the runs go on from a
clone on a machine where ``--root`` is gone: ``run`` copies them back into a run folder that has
no checkpoint, and the job continues with ``--resume`` (optimiser, learning-rate schedule, EMA
and epoch count included). A tensorpot job with a model under ``pretrained/`` but no checkpoint
starts from that model (``init_model``: its weights, a fresh optimiser).

``report`` does what ``save`` does, then tests every job's best-validation model on its test
files and writes each model's error table, learning curves, config and training command beside
it, the results to ``pretrained/results.json`` and the table beside the published numbers to
``docs/benchmarks/protocols.md`` (``protocol_report.py``; the jobs and their kept state are
``protocol_jobs.py``).

    setsid nohup python benchmarks/protocols.py run --hours 2 > ../runs/protocols.out 2>&1 &
    python benchmarks/protocols.py run --hours 0.05 --protocol rmd17-50 --root /tmp/proto
    python benchmarks/protocols.py status
    python benchmarks/protocols.py save      # before the machine goes: commit pretrained/
    python benchmarks/protocols.py report    # as save, tests the models, writes the table
    python benchmarks/protocols.py report --protocol 3bpa   # the others' results kept
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from protocol_jobs import (
    PRETRAINED,
    PROTOCOLS,
    REPO,
    ROOT,
    Job,
    PinnedMace,
    finished,
    fixed_overrides,
    job_done,
    log,
    log_rows,
    mace_run,
    read_progress,
    restore,
    save,
    write_3bpa_split,
    write_progress,
)
from protocol_report import DOC, report
from train_3bpa_vs_mace import machine_line


def tensorpot_command(
    job: Job, root: Path, protocol: str, cpu: int, minutes: float, pretrained: Path = PRETRAINED
) -> list[str]:
    """The training command of a tensorpot job: resumed from its newest checkpoint, or, when its
    run folder is gone, started from the model last copied to ``pretrained``."""
    folder = job.folder(root, protocol)
    resume = (folder / "checkpoints").is_dir() and any((folder / "checkpoints").iterdir())
    committed = pretrained / job.name / f"{job.name}.model"
    start = []
    if resume:
        start = ["--resume"]
    elif committed.exists() and not (folder / "log.csv").exists():
        start = [f"init_model={committed}"]
        log(f"{job.name}: no run in {folder}: starting from {committed}")
    return [
        "taskset", "-c", str(cpu), sys.executable, "-m", "tensorpot", "train", str(job.preset),
        *job.overrides, *fixed_overrides(job, root, protocol), f"time_budget_minutes={minutes:.3f}",
        *start,
    ]  # fmt: skip


def run_protocol(
    root: Path, protocol: str, hours: float, budget_hours: float, pretrained: Path = PRETRAINED
) -> float:
    """Train ``protocol``'s jobs side by side for up to ``hours``; returns the hours spent."""
    progress = read_progress(root, protocol)
    hours = min(hours, budget_hours - progress["hours"])
    if hours <= 0:
        return 0.0
    if protocol == "3bpa":
        write_3bpa_split(root)
    jobs = [job for job in PROTOCOLS[protocol] if not job_done(job, root, protocol)]
    launch = time.time()
    deadline = launch + 3600.0 * hours
    procs: list[subprocess.Popen] = []
    maces: list[PinnedMace] = []
    threads = []
    for cpu, job in enumerate(jobs):
        job.folder(root, protocol).mkdir(parents=True, exist_ok=True)
        if job.mace:
            mace = mace_run(job, root, protocol, cpu)
            mace.start(launch)
            maces.append(mace)
            thread = threading.Thread(target=mace.stop_after_deadline, args=(deadline, 5.0))
            thread.start()
            threads.append(thread)
            log(f"{protocol}/{job.name}: MACE started on core {cpu} (pid {mace.proc.pid})")
        else:
            command = tensorpot_command(job, root, protocol, cpu, 60.0 * hours, pretrained)
            out = open(job.folder(root, protocol) / "train.out", "a", encoding="utf-8")
            procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT))
            log(f"{protocol}/{job.name}: {shlex.join(command)}")
    session = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(launch))}
    progress["sessions"].append(session)
    before = progress["hours"]
    try:
        while any(p.poll() is None for p in procs) or any(t.is_alive() for t in threads):
            session["hours"] = (time.time() - launch) / 3600.0
            progress["hours"] = before + session["hours"]
            write_progress(root, protocol, progress)
            time.sleep(60.0 if time.time() < deadline else 5.0)
    except BaseException:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for mace in maces:
            mace.kill()
        raise
    finally:
        session["hours"] = (time.time() - launch) / 3600.0
        progress["hours"] = before + session["hours"]
        write_progress(root, protocol, progress)
    codes = [p.returncode for p in procs] + [m.return_code for m in maces]
    log(f"{protocol}: session of {session['hours']:.2f} h ended (exit codes {codes}), "
        f"{progress['hours']:.2f} h in all")  # fmt: skip
    return session["hours"]


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("run", "status", "save", "report"))
    parser.add_argument("--hours", type=float, default=1.0, help="hours of this session (run)")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), action="append")
    parser.add_argument("--budget-hours", type=float, default=8.0, help="per protocol, in all")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--pretrained", type=Path, default=PRETRAINED, help="kept state, models")
    parser.add_argument("--doc", type=Path, default=DOC, help="report: the table's file")
    args = parser.parse_args()
    pretrained, doc = args.pretrained.resolve(), args.doc.resolve()
    root = args.root.resolve()
    if root.is_relative_to(REPO):
        raise SystemExit("--root must lie outside the repository")
    chosen = args.protocol or list(PROTOCOLS)
    if args.action == "status":
        for protocol in chosen:
            progress = read_progress(root, protocol)
            epochs = {job.name: (log_rows(job.folder(root, protocol))[-1:] or [{}])[0].get("epoch")
                      for job in PROTOCOLS[protocol] if not job.mace}  # fmt: skip
            state = "finished" if finished(root, protocol, args.budget_hours) else "open"
            print(f"{protocol}: {progress['hours']:.2f} h, {state}, epochs {epochs}")
        return
    if args.action == "save":
        save(root, pretrained)
        return
    if args.action == "report":
        report(root, args.budget_hours, chosen, pretrained, doc)
        return
    left = args.hours
    log(f"{machine_line()}; root {root}")
    for protocol in chosen:
        if left <= 1.0 / 60.0:
            break
        restore(root, protocol, pretrained)
        if finished(root, protocol, args.budget_hours):
            continue
        left -= run_protocol(root, protocol, left, args.budget_hours, pretrained)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the jobs too (see run_protocol)
    main()
