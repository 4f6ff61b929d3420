import sys

from sprint.bench.cli import main

sys.exit(main())
