"""The CLI run in a fresh interpreter, to see what it imports (shared by several test modules)."""

from __future__ import annotations

import subprocess
import sys

_CODE = ("import sys\nfrom captcha.cli import main\ntry:\n    main({args!r})\n"
         "except SystemExit as exc:\n    print('exit', exc.code, 'torch' in sys.modules, file=sys.stderr)")


def run_cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """`captcha ARGS` in a new Python process; its stderr ends with "exit CODE TORCH_IMPORTED" (e.g. "exit 0
    False"). ``kwargs`` go to :func:`subprocess.run` (``cwd``, ``env``)."""
    return subprocess.run([sys.executable, "-c", _CODE.format(args=[str(a) for a in args])], capture_output=True,
                          text=True, **kwargs)
