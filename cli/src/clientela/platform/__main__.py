"""Entry point of `python -m clientela.platform`: the `clientela` command line."""

from clientela.platform.cli import main

if __name__ == "__main__":
    main()
