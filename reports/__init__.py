"""Reports for o2o-bench: read a results store, compute fine-tuning metrics and rliable aggregates,
write tables, figures and one index.html. Importing this package stays light (no rliable, no matplotlib)."""
from reports.metrics import unlearning_dip


def build_report(runs_dir, out_dir=None, **opts):
    """Write the report of `runs_dir` (see reports.build.build_report); returns the path of index.html."""
    from reports.build import build_report as _build

    return _build(runs_dir, out_dir, **opts)


__all__ = ["build_report", "unlearning_dip"]
