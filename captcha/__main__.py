"""`python -m captcha` is the `captcha` command."""

from .cli import main

main()
