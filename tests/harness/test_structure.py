"""harness/ stays readable: no function over 60 lines, no class over 200, no import cycle
(scripts/check_structure.py, which prints each breach)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_harness_has_no_long_function_or_class_and_no_import_cycle():
    spec = importlib.util.spec_from_file_location("check_structure", ROOT / "scripts" / "check_structure.py")
    checker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checker)
    assert checker.breaches("harness") == []
    assert checker.long_definitions(ROOT / "harness" / "runner.py") == []
