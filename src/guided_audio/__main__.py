"""`python -m guided_audio`: the command line, as `guided-audio` runs it."""

from guided_audio.cli import main

main()
