"""`python -m bequest`: the CLI, for launchers that start a module (accelerate launch -m, torchrun -m)."""

from bequest.cli import main

main()
