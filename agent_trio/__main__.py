"""``python -m agent_trio``: serve, ingest, chat."""

from agent_trio._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
