"""Commands kept out of cli.py so it stays one page: each a thin shell like cli.py's, added
to its group there."""
