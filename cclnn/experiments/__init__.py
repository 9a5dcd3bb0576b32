"""The paper's experiments at CPU scale: ``cclnn ablate SUITE --budget ITERS``.

A suite is a list of rows (Tables 1-5 of the paper). A trained row is one training run per seed
of a study-size network (``*-s`` in the registry: 32 channels; the EDSR family with 8
ResBlocks), all on the same data with the same schedule: the paper's CCLNN-L ablation protocol
(SPEC section 3: 500 epochs, warm-up 75, lr halved every 150) scaled to the budget, i.e. the
auxiliary loss starts after 15 % of the iterations and the learning rate halves every 30 %.
Fixed rows (bicubic, A2N with its official weights) are only scored.

Runs are named by (row, scale, budget, seed) and shared between suites: CCLNN-S of Table 1 is
also the n = 15 % row of Table 3, the lambda = 2e-3 row of Table 4 and a row of Table 5.
Under ``--out`` (default ``results/experiments``):

* ``configs/RUN.yaml``: the exact config of a run (``cclnn train configs/RUN.yaml`` repeats it);
* ``runs/RUN/``: the trainer's run directory (``config.yaml``, ``train_log.csv``,
  ``val_log.csv``, ``console.log``; ``latest.pt`` while it runs), then ``final.safetensors``
  (the last weights) and ``metrics.json`` (those weights scored on the test sets, wall time);
* ``SUITE.md`` / ``SUITE.json``: the table with the paper's claims checked, ``SUITE.png``: the
  validation PSNR against the iterations (mean over the seeds, band: min-max).

Resumable: a run with ``metrics.json`` is done and skipped, one with ``latest.pt`` is resumed;
a run directory made with a different config is an error, not silently reused. Each run trains
in its own process (``cclnn train``), so ``--jobs 2`` runs two at a time with one thread each,
which on 2 cores trains the NLSA networks about 1.3x faster in total than one run on 2 threads.
Modules, one job each: ``suites`` (the tables as data), ``study`` (run configs and the plan of
jobs), ``runner`` (trains the jobs in subprocesses), ``scoring`` (final weights on the test sets,
``metrics.json``), ``verdicts`` (the paper's claims against the seeds), ``report`` (tables and
plots), ``estimate`` (the time left).
"""
from __future__ import annotations

from ..errors import CclnnError


class AblationError(CclnnError):
    """A suite cannot run or its results cannot be read (one-line message)."""


class AblationInterrupted(AblationError):
    """SIGINT/SIGTERM stopped the suite after its running trainings saved checkpoints."""
    exit_code = 130
