"""``python -m lama_cleaner``: the same as the ``lama-cleaner`` command."""

from .cli import entry_point

if __name__ == "__main__":
    entry_point()
