"""`python -m squeezecli` runs the `squeeze` command."""

from squeezecli.cli import main

if __name__ == "__main__":
    main()
