"""``bench nightly``: run -> compare with the committed baseline -> report -> exit code.

Config (YAML, default ``nightly.yaml`` at the repository root)::

    profile: quick                      # quick | full
    methods: all                        # names / globs
    datasets: [synth_detection, ...]    # optional; default: the profile's
    metrics: all                        # optional
    roots: {cuhk: /data/CUHK}           # real datasets, optional
    baseline: reports/baselines/quick   # a committed run directory
    out: reports/nightly/latest         # replaced every night

Exit code: 1 when the comparison finds a regression (worse or newly failing), 4 when the run
and the baseline share nothing comparable, else the run's own code (0 ok, 3 partial failure or
no report, 4 nothing ran).  Relative paths are relative to the config.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from datagen.errors import UserError, describe_validation_error

from .harness import EXIT_NOTHING, EXIT_REGRESSION, parse_roots, run


class NightlyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: str = "quick"
    methods: str = "all"
    datasets: list[str] | None = None
    metrics: str | None = None
    roots: dict[str, str] = {}
    baseline: str
    out: str = "reports/nightly/latest"
    device: str = "cpu"


def load_config(path: str | Path) -> tuple[NightlyConfig, Path]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise UserError(f"nightly config {path}: {err.strerror or err}; pass --config FILE") from None
    except yaml.YAMLError as err:
        raise UserError(f"nightly config {path}: not valid YAML ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(data, dict):
        raise UserError(f"nightly config {path}: expected a mapping of settings")
    try:
        return NightlyConfig.model_validate(data), path.resolve().parent
    except ValidationError as err:
        raise UserError(f"nightly config {path}: {describe_validation_error(err)}") from None


def nightly(config_path: str | Path, *, log=lambda m: print(m, file=sys.stderr)) -> int:
    from .compare import compare_runs, format_table, has_regression, nothing_comparable
    from .store import load_run

    cfg, base_dir = load_config(config_path)
    baseline = (base_dir / cfg.baseline).resolve()
    load_run(baseline)  # fail early, one line, if the baseline is missing
    out = (base_dir / cfg.out).resolve()
    roots = {k: str((base_dir / v).resolve()) for k, v in parse_roots(cfg.roots).items()}
    run_dir, code = run(methods=cfg.methods, datasets=cfg.datasets, metrics=cfg.metrics, profile=cfg.profile,
                        roots=roots, out=out, device=cfg.device, baseline=baseline, log=log)
    rows = compare_runs(baseline, run_dir)
    print(format_table(rows))
    if (run_dir / "report.html").is_file():
        log(f"report: {run_dir / 'report.html'}")
    if has_regression(rows):
        log("nightly: REGRESSION against the baseline")
        return EXIT_REGRESSION
    nothing = nothing_comparable(rows)
    if nothing:
        log(f"nightly: {nothing}")
        return EXIT_NOTHING
    return code
