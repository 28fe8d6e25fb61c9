import sys

from jointopt.cli import main

sys.exit(main())
