"""``python -m standin``: serve the stand-in in the foreground (``--help`` for the options)."""

from standin.server import main

main()
