"""``python -m keplerd`` runs the daemon."""

from keplerd.daemon import main

if __name__ == "__main__":
    main()
