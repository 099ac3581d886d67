"""python -m compress MODEL_DIR --recipe PRESET|FILE --out OUT_DIR [calibration options]"""

import argparse
import sys
from pathlib import Path

from common.work import progress_bar
from compress import PRESETS, CalibrationConfig, compress


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m compress", description=__doc__)
    p.add_argument("model_dir", type=Path)
    p.add_argument("--recipe", required=True, help=f"preset ({', '.join(PRESETS)}) or recipe YAML file")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--dataset", help="calibration data: .txt/.jsonl/.json file or folder, or a HF dataset id")
    p.add_argument("--num-samples", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--split")
    p.add_argument("--text-column", default="text")
    p.add_argument("--chat-template", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    given = any(v is not None for v in (a.dataset, a.num_samples, a.seq_len, a.split, a.chat_template))
    calibration = (
        CalibrationConfig(a.dataset, a.num_samples, a.seq_len, a.split, a.text_column, a.chat_template, a.seed)
        if given
        else None
    )

    with progress_bar() as progress:
        report = compress(a.model_dir, a.recipe, a.out, calibration=calibration, device=a.device, progress=progress)
    print(f"{a.out}: {report.scheme} in {report.seconds['total']:.1f} s", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
