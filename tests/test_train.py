"""The main job, `pipeflow train`, and the lecture example run for real."""
import pathlib
import re
import subprocess
import sys

import pipeflow as pf

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_pipeflow_train_reaches_97_percent_and_reloads_its_checkpoint(tmp_path):
    checkpoint = tmp_path / "digits.pt"
    result = subprocess.run([sys.executable, "-m", "pipeflow.cli", "train", "--output",
                             str(checkpoint), "--show", "5"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    accuracy = float(re.search(r"held-out accuracy ([\d.]+)%\n(?!.*held-out accuracy)", out,
                               re.S).group(1))
    assert accuracy >= 97.0, out
    assert "epoch 15/15" in result.stderr  # one progress bar per epoch
    assert len(re.findall(r"label \d  predicted \d", out)) == 5, out
    saved = pf.load(checkpoint)
    assert saved["model"] == "cnn" and abs(saved["accuracy"] * 100 - accuracy) < 0.01
    assert "features.1.running_mean" in saved["state_dict"]


def test_pipeflow_command_lists_its_subcommands():
    result = subprocess.run([sys.executable, "-m", "pipeflow.cli", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "train" in result.stdout


def test_lecture_example_fits_the_cubic():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "lecture.py")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    losses = dict(re.findall(r"(step\d\w+)\s+final loss\s+([\d.]+)", result.stdout))
    assert len(losses) == 6, result.stdout
    for name, loss in losses.items():  # a least-squares cubic fit of sin has loss ~ 9
        assert float(loss) < 50, (name, result.stdout)
