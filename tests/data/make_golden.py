"""Writes golden-v1.npz and golden-v1.json: a small version-1 checkpoint, the sample
it gives for a fixed seed and the eval loss it gives, as this version computes them.
Run once, when the golden files are made; later versions must reproduce them
(tests/test_golden.py), so never rerun it to make a failing test pass.

    python3 tests/data/make_golden.py
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TEXT = ("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n"
        "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date;\n")


def charrnn(*args):
    r = subprocess.run([sys.executable, "-m", "charrnn", *args], capture_output=True, text=True, check=True)
    return r.stdout


def main():
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "sonnet.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(TEXT * 40)
        out = os.path.join(tmp, "run")
        charrnn("train", corpus, "--out", out, "--model", "lstm", "--hidden", "24", "--layers", "2",
                "--batch-size", "4", "--seq-len", "16", "--steps", "120", "--eval-every", "60",
                "--seed", "5", "-q", "--no-preview")
        os.replace(os.path.join(out, "latest.npz"), os.path.join(HERE, "golden-v1.npz"))
    ck = os.path.join(HERE, "golden-v1.npz")
    sample = charrnn("sample", "-c", ck, "--seed", "7", "--length", "300", "--prime", "Thou")
    with open(os.path.join(HERE, "golden-eval.txt"), "w", encoding="utf-8") as f:
        f.write(TEXT)
    ev = json.loads(charrnn("eval", "-c", ck, os.path.join(HERE, "golden-eval.txt"), "--json"))
    with open(os.path.join(HERE, "golden-v1.json"), "w", encoding="utf-8") as f:
        json.dump({"sample_args": ["--seed", "7", "--length", "300", "--prime", "Thou"],
                   "sample": sample, "eval_file": "golden-eval.txt",
                   "eval_loss": ev["files"][0]["loss"]}, f, indent=1)


if __name__ == "__main__":
    main()
