"""What every role uses: the shared pyinfra operations (deploys/core/operations.py), and more as issue 21 moves it here."""
