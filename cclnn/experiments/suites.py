"""The paper's tables as data: rows (networks, options), claims, and the protocol's constants."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from . import AblationError

DEFAULT_TRAIN = ("../shared/data/train/T91", "../shared/data/train/SunHays80")
DEFAULT_A2N = "../shared/weights/a2n/aan_x2.pt"
HOLD_OUT = 10  # validation images held out of the last training folder
WARMUP_FRACTION = 75 / 500  # the ablation protocol's warm-up, as a share of the run
LR_STEP_FRACTION = 150 / 500  # ... and its learning-rate step


@dataclass(frozen=True)
class Row:
    """One line of a table: a network trained per seed, or a fixed method only scored."""
    key: str  # run-name stem, the same row in every suite it appears in
    label: str
    model: str  # registry name, or "bicubic"
    options: Mapping[str, Any] = field(default_factory=dict)  # model options
    overrides: tuple[str, ...] = ()  # training-config overrides (key=value)
    weights: Optional[str] = None  # fixed weights: scored, not trained ("a2n" -> --a2n-weights)
    ensemble_of: Optional["Row"] = None  # x8 self-ensemble of that row's final weights, per seed

    @property
    def trained(self) -> bool:
        return self.model != "bicubic" and self.weights is None and self.ensemble_of is None

    @property
    def seeded(self) -> bool:
        """One result per seed (a trained row, or the self-ensemble of one)."""
        return self.trained or self.ensemble_of is not None


@dataclass(frozen=True)
class Claim:
    """The paper says every row of ``better`` beats every row of ``worse`` (PSNR, datasets)."""
    text: str
    better: tuple[str, ...]
    worse: tuple[str, ...]
    datasets: tuple[str, ...] = ("Set5",)


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    rows: tuple[Row, ...]
    claims: tuple[Claim, ...]
    seeds: int  # the study's plan: seeds 0 .. seeds-1 (`ablate`'s default --seeds)


CCLNN_S = Row("cclnn-s", "CCLNN-S", "cclnn-s")
EDSR_S = Row("edsr-s", "EDSR-S", "edsr-s")
NLSN_S = Row("nlsn-s", "NLSN-S", "nlsn-s")
LOCAL = Row("cclnn-s-local", "CCLNN-S-local", "cclnn-s", {"branches": "local"})
NONLOCAL = Row("cclnn-s-nonlocal", "CCLNN-S-Non-L", "cclnn-s",
               {"branches": "nonlocal", "aux_loss": "none"})
TSPARSE = Row("cclnn-s-tsparse", "CCLNN-S-TSparse", "cclnn-s", {"aux_loss": "sparse"})
NSPARSE = Row("cclnn-s-nsparse", "CCLNN-S-NSparse", "cclnn-s", {"aux_loss": "none"})
N_ROWS = tuple(dataclasses.replace(CCLNN_S, label="n = 15 % (CCLNN-S)") if n == 15 else
               Row(f"cclnn-s-n{n:02d}", f"n = {n} %", "cclnn-s", {"contrast_ratio": n / 100})
               for n in (5, 15, 25, 35, 45))
LAMBDA_ROWS = tuple(dataclasses.replace(CCLNN_S, label="lambda = 2e-3 (CCLNN-S)") if k == 2 else
                    Row(f"cclnn-s-lambda{k}e-3", f"lambda = {k}e-3", "cclnn-s",
                        overrides=(f"loss.aux_weight={k}e-3",))
                    for k in (2, 4, 6, 8))
RNAN_S = Row("rnan-s", "RNAN-S", "rnan-s")
DIVANET_S = Row("divanet-s", "DiVANet-S", "divanet-s")


def plus(row: Row) -> Row:
    """The row's x8 self-ensemble (the paper's RNAN+ and DiVANet+)."""
    return Row(f"{row.key}-plus", f"{row.label}+ (x8 self-ensemble)", row.model, row.options,
               ensemble_of=row)


TABLE5_ROWS = (Row("bicubic", "Bicubic", "bicubic"), Row("srcnn", "SRCNN", "srcnn"),
               Row("vdsr", "VDSR", "vdsr"), EDSR_S, Row("rcan-s", "RCAN-S", "rcan-s"),
               RNAN_S, plus(RNAN_S), DIVANET_S, plus(DIVANET_S), NLSN_S, CCLNN_S, plus(CCLNN_S),
               Row("a2n", "A2N (official weights)", "a2n", weights="a2n"))


def _keys(rows, *exclude) -> tuple[str, ...]:
    return tuple(r.key for r in rows if r.key not in exclude)


SUITES = {s.name: s for s in (
    Suite("table1", "Table 1: local + non-local (CCLN block) against either alone",
          (CCLNN_S, LOCAL, EDSR_S, NONLOCAL, NLSN_S),
          (Claim("CCLNN-L is the best of the five", ("cclnn-s",),
                 ("cclnn-s-local", "edsr-s", "cclnn-s-nonlocal", "nlsn-s")),
           Claim("NLSN-L beats EDSR-L", ("nlsn-s",), ("edsr-s",)),
           Claim("the CCLN framework helps the NLSA structure (CCLNN-Non-L beats NLSN-L)",
                 ("cclnn-s-nonlocal",), ("nlsn-s",)),
           Claim("... and hurts the EDSR structure (EDSR-L beats CCLNN-local)",
                 ("edsr-s",), ("cclnn-s-local",))), seeds=4),
    Suite("table2", "Table 2: contrastive CCA against L1-sparse CA and plain CA",
          (CCLNN_S, TSPARSE, NSPARSE),
          (Claim("CCLNN-L is the best of the three", ("cclnn-s",),
                 ("cclnn-s-tsparse", "cclnn-s-nsparse")),
           Claim("NSparse beats TSparse", ("cclnn-s-nsparse",), ("cclnn-s-tsparse",))), seeds=4),
    Suite("table3", "Table 3: the share n of channels in the contrastive loss", N_ROWS,
          (Claim("n = 15 % is the best", ("cclnn-s",), _keys(N_ROWS, "cclnn-s")),), seeds=2),
    Suite("table4", "Table 4: the weight lambda of the contrastive loss", LAMBDA_ROWS,
          (Claim("lambda = 2e-3 is the best", ("cclnn-s",), _keys(LAMBDA_ROWS, "cclnn-s")),
           Claim("too large a lambda hurts (8e-3 is the worst)", _keys(LAMBDA_ROWS,
                 "cclnn-s-lambda8e-3"), ("cclnn-s-lambda8e-3",))), seeds=2),
    Suite("table5", "Table 5: CCLNN against its peers at an equal training budget", TABLE5_ROWS,
          # the paper's rows (RNAN+ and DiVANet+ self-ensembled, CCLNN plain) trained here at
          # one budget; A2N's official weights had DIV2K and days of training
          (Claim("CCLNN is the best on every set", ("cclnn-s",),
                 ("srcnn", "vdsr", "edsr-s", "rcan-s", "rnan-s-plus", "divanet-s-plus",
                  "nlsn-s"), ("Set5", "Set14", "B100")),), seeds=4),
)}


def only_rows(suite: Suite, keys) -> Suite:
    """The suite cut down to the rows named by ``keys`` (``--only``); all of it for none."""
    if not keys:
        return suite
    known = [r.key for r in suite.rows]
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise AblationError(f"--only: {suite.name} has no row {unknown[0]!r}; its rows are "
                            f"{', '.join(known)}")
    return dataclasses.replace(suite, rows=tuple(r for r in suite.rows if r.key in keys))

