"""Golden files: a version-1 checkpoint committed under tests/data/ (made by
tests/data/make_golden.py), with the sample it must give for a fixed seed and the
eval loss it must give. Every later version must read version 1 the same way."""
import json
from pathlib import Path

from charrnn import checkpoint as C
from conftest import run_cli

DATA = Path(__file__).parent / "data"


def test_version_1_checkpoint_samples_and_scores_as_it_did():
    want = json.loads((DATA / "golden-v1.json").read_text(encoding="utf-8"))
    ck = C.load(DATA / "golden-v1.npz")
    assert ck.model_cfg.model == "lstm" and ck.model_cfg.layers == 2
    r = run_cli("sample", "-c", DATA / "golden-v1.npz", *want["sample_args"])
    assert r.returncode == 0, r.stderr.decode()
    # the recorded stdout ends with the newline sample added to a pipe before issue 23
    assert r.stdout.decode() + "\n" == want["sample"]
    r = run_cli("eval", "-c", DATA / "golden-v1.npz", DATA / want["eval_file"], "--json")
    got = json.loads(r.stdout)["files"][0]["loss"]
    assert abs(got - want["eval_loss"]) < 1e-6, (got, want["eval_loss"])
