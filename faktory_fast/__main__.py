"""`python -m faktory_fast` runs the server."""
from faktory_fast.cli import main

if __name__ == "__main__":
    main()
