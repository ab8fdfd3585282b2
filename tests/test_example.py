"""The README's first command runs scripts/example.py: it must train to high accuracy."""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_example_script_learns_the_spirals():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "example.py"), "--steps", "400"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"final train accuracy ([\d.]+)%", result.stdout).group(1))
    assert accuracy > 95, result.stdout
