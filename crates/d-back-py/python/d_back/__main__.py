"""``python -m d_back``: the d-back server with the built-in world (see ``--help``)."""

from d_back.server import main_sync

if __name__ == "__main__":
    main_sync()
