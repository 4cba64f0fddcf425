#!/usr/bin/env python
"""Batch solving: `python scripts/solve_batch.py INPUT... --out predictions.csv [--resume]`.

The same as `captcha solve-batch` (see its --help): directories, globs or .txt lists of paths in,
one CSV row per input out (`filename,text,confidence,error`); bad files get error rows.
"""

import sys

from captcha.cli import main

if __name__ == "__main__":
    main(["solve-batch", *sys.argv[1:]], prog_name="solve_batch.py")
